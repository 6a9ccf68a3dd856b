#include "version.h"
/* Bumped when a struct layout or a signature changes, so a stale build is detected. */
int sp_native_abi(void) { return 1; }
