/*
 * test_ipc_wire: the ipc:// framing kmsd speaks (kms/transport/ipc_wire.h),
 * and the test vector in docs/transport.md, built from the real schema.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include <kms/kms.pb-c.h>

#include "kms/transport/ipc_wire.h"

static void hello_is_nng_and_nanomsg_s(void **state)
{
	(void)state;
	uint8_t h[IPC_WIRE_HELLO_LEN];
	ipc_wire_hello(h, IPC_WIRE_PROTO_REP);
	const uint8_t rep[8] = { 0, 'S', 'P', 0, 0, 0x31, 0, 0 };
	assert_memory_equal(h, rep, sizeof rep);
	const uint8_t req[8] = { 0, 'S', 'P', 0, 0, 0x30, 0, 0 };
	assert_true(ipc_wire_hello_is(req, IPC_WIRE_PROTO_REQ));
	assert_false(ipc_wire_hello_is(rep, IPC_WIRE_PROTO_REQ)); /* a REP peer: refused */
	uint8_t bad[8];
	for (size_t i = 0; i < sizeof bad; i++) { /* any byte changed: refused */
		memcpy(bad, req, sizeof bad);
		bad[i] ^= 0x01;
		assert_false(ipc_wire_hello_is(bad, IPC_WIRE_PROTO_REQ));
	}
}

static void frames_round_trip(void **state)
{
	(void)state;
	uint8_t f[IPC_WIRE_FRAME_LEN];
	uint64_t len = 0;
	const uint64_t lens[] = { 0, 1, 255, 256, 8u << 20, UINT64_MAX };
	for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
		ipc_wire_frame(f, lens[i]);
		assert_int_equal(f[0], 1);
		assert_true(ipc_wire_frame_len(f, &len));
		assert_true(len == lens[i]);
	}
	f[0] = 2; /* not a message frame */
	assert_false(ipc_wire_frame_len(f, &len));
}

static void backtraces(void **state)
{
	(void)state;
	const uint8_t one[] = { 0x80, 0, 0, 1, 'x' };
	assert_int_equal(ipc_wire_backtrace_len(one, sizeof one), 4);
	const uint8_t two[] = { 0, 0, 0, 7, 0x80, 0, 0, 1 };
	assert_int_equal(ipc_wire_backtrace_len(two, sizeof two), 8);
	const uint8_t none[] = { 0, 0, 0, 1, 0, 0, 0, 2 };
	assert_int_equal(ipc_wire_backtrace_len(none, sizeof none), 0);
	const uint8_t short_word[] = { 0x80, 0, 0 };
	assert_int_equal(ipc_wire_backtrace_len(short_word, sizeof short_word), 0);
	/* Nine words, the last one ending it: more hops than kept, refused. */
	uint8_t nine[36] = { 0 };
	nine[32] = 0x80;
	assert_int_equal(ipc_wire_backtrace_len(nine, sizeof nine), 0);
	nine[28] = 0x80; /* eight words: the most kept */
	assert_int_equal(ipc_wire_backtrace_len(nine, sizeof nine), 32);
}

/* docs/transport.md: Health, request id "h", REQ id 1. */
static void documented_vector(void **state)
{
	(void)state;
	Kms__HealthRequest h = KMS__HEALTH_REQUEST__INIT;
	Kms__Request req = KMS__REQUEST__INIT;
	req.schema_version = 1;
	req.request_id = "h";
	req.op_case = KMS__REQUEST__OP_HEALTH;
	req.health = &h;
	uint8_t wire[64];
	size_t body = kms__request__pack(&req, wire + IPC_WIRE_FRAME_LEN + 4);
	ipc_wire_frame(wire, 4 + body);
	const uint8_t id[4] = { 0x80, 0, 0, 1 };
	memcpy(wire + IPC_WIRE_FRAME_LEN, id, sizeof id);
	const uint8_t documented[] = { 0x01, 0, 0, 0, 0, 0, 0, 0, 0x0c, 0x80, 0, 0, 1,
	                               0x08, 0x01, 0x12, 0x01, 0x68, 0x82, 0x03, 0x00 };
	assert_int_equal(IPC_WIRE_FRAME_LEN + 4 + body, sizeof documented);
	assert_memory_equal(wire, documented, sizeof documented);
	assert_int_equal(ipc_wire_backtrace_len(wire + IPC_WIRE_FRAME_LEN, 4 + body), 4);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(hello_is_nng_and_nanomsg_s),
		cmocka_unit_test(frames_round_trip),
		cmocka_unit_test(backtraces),
		cmocka_unit_test(documented_vector),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
