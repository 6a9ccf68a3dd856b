#ifndef SP_VERSION_H
#define SP_VERSION_H
/* CDEF-BEGIN */
int sp_native_abi(void);
/* CDEF-END */
#endif
