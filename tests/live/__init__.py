"""Live tests: the real Asterisk labs of ../shared (CALLCENTER_ASTERISK_DIR), SIPp phones, and the product's real CRM
and bridge as child processes. The harness is in labs.py (Asterisk, AMI, SIPp) and stack.py (CRM, bridge, waits);
the fixtures in conftest.py."""
