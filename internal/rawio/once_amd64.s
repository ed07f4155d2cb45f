#include "textflag.h"

// func sys4(trap, a1, a2, a3, a4 uintptr) uintptr
TEXT ·sys4(SB),NOSPLIT,$0-48
	MOVQ	a1+8(FP), DI
	MOVQ	a2+16(FP), SI
	MOVQ	a3+24(FP), DX
	MOVQ	a4+32(FP), R10
	XORL	R8, R8
	XORL	R9, R9
	MOVQ	trap+0(FP), AX
	SYSCALL
	MOVQ	AX, ret+40(FP)
	RET
