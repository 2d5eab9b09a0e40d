"""KV memory managers and context switching (issue 15): vAttention's and FastSwitch's studies."""
