/*
 * ipc_wire.h: the bytes NNG and nanomsg exchange on ipc:// (their "SP over
 * ipc" framing), as pure functions over buffers, so that kmsd can accept
 * ipc connections itself (docs/transport.md) and every check is testable
 * and fuzzable without a socket.
 *
 *   connection header, each side, once:  00 'S' 'P' 00 | protocol (u16 BE) | 00 00
 *   then each message:                   01 | length (u64 BE) | length bytes
 *
 * A request message starts with the REQ backtrace: 32-bit big-endian words,
 * the last one (the request id) with its top bit set; the reply carries the
 * same words back in front of its body. kmsd is a REP (0x31) and takes only
 * REQ peers (0x30).
 */
#ifndef KMS_IPC_WIRE_H
#define KMS_IPC_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define IPC_WIRE_HELLO_LEN 8
#define IPC_WIRE_FRAME_LEN 9
#define IPC_WIRE_PROTO_REQ 0x30
#define IPC_WIRE_PROTO_REP 0x31
/* As NNG's REP: at most 8 words of backtrace (hops through devices). */
#define IPC_WIRE_BACKTRACE_MAX 32

/* The connection header a peer of protocol `proto` sends. */
void ipc_wire_hello(uint8_t out[IPC_WIRE_HELLO_LEN], uint16_t proto);

/* Whether in[] is a well-formed connection header of protocol `proto`. */
bool ipc_wire_hello_is(const uint8_t in[IPC_WIRE_HELLO_LEN], uint16_t proto);

/* The frame header of a message of `len` bytes. */
void ipc_wire_frame(uint8_t out[IPC_WIRE_FRAME_LEN], uint64_t len);

/* Reads a frame header: false unless its type byte is 1. */
bool ipc_wire_frame_len(const uint8_t in[IPC_WIRE_FRAME_LEN], uint64_t *len);

/* The length of the backtrace at the front of a request message (4 to
 * IPC_WIRE_BACKTRACE_MAX bytes), or 0 when the message has none that ends
 * within those bytes: such a message is not a request. */
size_t ipc_wire_backtrace_len(const uint8_t *msg, size_t len);

#endif
