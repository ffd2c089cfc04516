/*
 * fuzz_ipc_wire: the SP-over-ipc framing kmsd reads from every local peer
 * (kms/transport/ipc_wire.c), driven as ipc_server.c's reader drives it:
 * the input is a peer's byte stream, read as a connection header, then
 * frame headers and bodies, with the server's bounds (a body of 4 bytes
 * to max_request_bytes + IPC_WIRE_BACKTRACE_MAX; here 4096 + 32).
 *
 * Invariants:
 *   - the header is accepted exactly when it is 00 'S' 'P' 00 00 30 00 00;
 *   - a frame header is read back to the length it was written with, and
 *     writing what was read gives the same 9 bytes;
 *   - a body's backtrace length agrees with an independent reading of NNG's
 *     rule (32-bit words, the first with its top bit set ends it, at most 8
 *     words): a multiple of 4, at most the body and 32 bytes; 0 when no
 *     word within those ends it;
 *   - a stream the reader stops on is refused for a reason: a bad header,
 *     a frame type other than 1, a length out of bounds, or a body with no
 *     backtrace (not a request).
 */
#include <stdbool.h>
#include <string.h>

#include "kms/transport/ipc_wire.h"
#include "tests/support/fuzz.h"

#define MAX_REQUEST 4096u

static size_t oracle_backtrace(const uint8_t *msg, size_t len)
{
	for (size_t word = 0; word < IPC_WIRE_BACKTRACE_MAX / 4; word++) {
		size_t end = (word + 1) * 4;
		if (end > len)
			return 0;
		if (msg[word * 4] >= 0x80)
			return end;
	}
	return 0;
}

static void check_frame(const uint8_t head[IPC_WIRE_FRAME_LEN], uint64_t len)
{
	uint8_t again[IPC_WIRE_FRAME_LEN];
	uint64_t back = 0;
	ipc_wire_frame(again, len);
	FUZZ_CHECK(memcmp(again, head, IPC_WIRE_FRAME_LEN) == 0);
	FUZZ_CHECK(ipc_wire_frame_len(again, &back) && back == len);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint8_t req_hello[IPC_WIRE_HELLO_LEN] = { 0, 'S', 'P', 0, 0, 0x30, 0, 0 };
	if (size < IPC_WIRE_HELLO_LEN)
		return 0;
	bool hello = ipc_wire_hello_is(data, IPC_WIRE_PROTO_REQ);
	FUZZ_CHECK(hello == (memcmp(data, req_hello, IPC_WIRE_HELLO_LEN) == 0));
	FUZZ_CHECK(!ipc_wire_hello_is(data, IPC_WIRE_PROTO_REP) || !hello);
	uint8_t mine[IPC_WIRE_HELLO_LEN];
	ipc_wire_hello(mine, IPC_WIRE_PROTO_REP);
	FUZZ_CHECK(ipc_wire_hello_is(mine, IPC_WIRE_PROTO_REP));
	if (!hello)
		return 0;

	size_t at = IPC_WIRE_HELLO_LEN;
	for (unsigned messages = 0; size - at >= IPC_WIRE_FRAME_LEN; messages++) {
		const uint8_t *head = data + at;
		uint64_t len = 0;
		bool framed = ipc_wire_frame_len(head, &len);
		FUZZ_CHECK(framed == (head[0] == 1));
		if (!framed)
			return 0; /* the reader closes the peer */
		check_frame(head, len);
		at += IPC_WIRE_FRAME_LEN;
		if (len < 4 || len > MAX_REQUEST + IPC_WIRE_BACKTRACE_MAX)
			return 0; /* closed: out of bounds */
		if (len > size - at)
			return 0; /* the rest never came */
		const uint8_t *body = data + at;
		size_t bt = ipc_wire_backtrace_len(body, (size_t)len);
		FUZZ_CHECK(bt == oracle_backtrace(body, (size_t)len));
		FUZZ_CHECK(bt % 4 == 0 && bt <= len && bt <= IPC_WIRE_BACKTRACE_MAX);
		if (bt) {
			FUZZ_CHECK(body[bt - 4] & 0x80);
			for (size_t w = 0; w + 4 < bt; w += 4)
				FUZZ_CHECK(!(body[w] & 0x80));
		}
		if (!bt)
			return 0; /* not a request: closed */
		at += (size_t)len;
	}
	return 0;
}
