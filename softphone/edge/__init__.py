"""The PBX edge: registrar, B2BUA with anchored media, and the policy guard at every decision."""
