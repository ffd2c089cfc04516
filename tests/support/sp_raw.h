/*
 * sp_raw.h: NNG's SP protocol spoken by hand on a socket, for tests that
 * must send what no NNG client would (a lying length, half a header, a
 * flood) or watch what kmsd does before a byte is answered.
 *
 * On a stream the conversation starts with each side's 8-byte hello
 * (0 'S' 'P' 0, then the protocol number, 16 bits, and 2 bytes of 0). Each
 * REQ message is then its length (8 bytes, big endian: the request id and
 * the body) and the request id (4 bytes, big endian, top bit set), then
 * the body. ipc:// puts a 1-byte message type (1) before the length;
 * tls+tcp:// does not. Every call here is bounded.
 */
#ifndef KMS_TESTS_SP_RAW_H
#define KMS_TESTS_SP_RAW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SP_RAW_REQ_HEAD 12  /* length and request id */
#define SP_RAW_IPC_HEAD 13  /* the message type, then the above */

extern const uint8_t sp_raw_req_hello[8];  /* a REQ peer's hello (protocol 0x30) */
extern const uint8_t sp_raw_rep_hello[8];  /* a REP peer's (0x31) */

/* The head of a REQ message whose body is body_len bytes, request id id
 * (its top bit is set here): for tls+tcp://, and for ipc:// with the
 * message type first. */
void sp_raw_req_head(uint8_t out[SP_RAW_REQ_HEAD], uint32_t id, uint64_t body_len);
void sp_raw_ipc_head(uint8_t out[SP_RAW_IPC_HEAD], uint32_t id, uint64_t body_len);

/* A blocking unix stream connection to path (close-on-exec), each read
 * and write bounded by io_timeout_s; -1 when it cannot be had. */
int sp_raw_unix_connect(const char *path, int io_timeout_s);

/* Writes all n bytes to fd (a socket, without SIGPIPE; or a pipe). False
 * when the peer is gone or a write fails. */
bool sp_raw_put_all(int fd, const void *p, size_t n);

/* Reads exactly n bytes from fd before deadline_ms (CLOCK_MONOTONIC, ms).
 * False on end of stream, an error or the deadline. */
bool sp_raw_get_all(int fd, void *p, size_t n, uint64_t deadline_ms);

#endif
