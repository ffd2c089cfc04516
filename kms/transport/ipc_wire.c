/*
 * ipc_wire.c: the SP-over-ipc framing (ipc_wire.h).
 */
#include "kms/transport/ipc_wire.h"

void ipc_wire_hello(uint8_t out[IPC_WIRE_HELLO_LEN], uint16_t proto)
{
	out[0] = 0;
	out[1] = 'S';
	out[2] = 'P';
	out[3] = 0;
	out[4] = (uint8_t)(proto >> 8);
	out[5] = (uint8_t)proto;
	out[6] = 0;
	out[7] = 0;
}

bool ipc_wire_hello_is(const uint8_t in[IPC_WIRE_HELLO_LEN], uint16_t proto)
{
	uint8_t want[IPC_WIRE_HELLO_LEN];
	ipc_wire_hello(want, proto);
	for (size_t i = 0; i < IPC_WIRE_HELLO_LEN; i++)
		if (in[i] != want[i])
			return false;
	return true;
}

void ipc_wire_frame(uint8_t out[IPC_WIRE_FRAME_LEN], uint64_t len)
{
	out[0] = 1;
	for (int i = 0; i < 8; i++)
		out[1 + i] = (uint8_t)(len >> (56 - 8 * i));
}

bool ipc_wire_frame_len(const uint8_t in[IPC_WIRE_FRAME_LEN], uint64_t *len)
{
	if (in[0] != 1)
		return false;
	uint64_t n = 0;
	for (int i = 0; i < 8; i++)
		n = (n << 8) | in[1 + i];
	*len = n;
	return true;
}

size_t ipc_wire_backtrace_len(const uint8_t *msg, size_t len)
{
	for (size_t at = 0; at + 4 <= len && at + 4 <= IPC_WIRE_BACKTRACE_MAX; at += 4)
		if (msg[at] & 0x80)
			return at + 4;
	return 0;
}
