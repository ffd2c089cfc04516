/*
 * sp_raw.c: SP framing by hand for the tests (sp_raw.h).
 */
#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "tests/support/sp_raw.h"

const uint8_t sp_raw_req_hello[8] = { 0, 'S', 'P', 0, 0, 0x30, 0, 0 };
const uint8_t sp_raw_rep_hello[8] = { 0, 'S', 'P', 0, 0, 0x31, 0, 0 };

static uint64_t sp_raw_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void sp_raw_req_head(uint8_t out[SP_RAW_REQ_HEAD], uint32_t id, uint64_t body_len)
{
	uint64_t len = 4 + body_len;
	for (int i = 0; i < 8; i++)
		out[i] = (uint8_t)(len >> (56 - 8 * i));
	id |= 0x80000000u;
	for (int i = 0; i < 4; i++)
		out[8 + i] = (uint8_t)(id >> (24 - 8 * i));
}

void sp_raw_ipc_head(uint8_t out[SP_RAW_IPC_HEAD], uint32_t id, uint64_t body_len)
{
	out[0] = 1;
	sp_raw_req_head(out + 1, id, body_len);
}

int sp_raw_unix_connect(const char *path, int io_timeout_s)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct timeval tv = { .tv_sec = io_timeout_s };
	if (strlen(path) >= sizeof sa.sun_path)
		return -1;
	memcpy(sa.sun_path, path, strlen(path) + 1);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) != 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) != 0 ||
	    connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
		close(fd);
		return -1;
	}
	return fd;
}

bool sp_raw_put_all(int fd, const void *p, size_t n)
{
	const uint8_t *b = p;
	while (n) {
		ssize_t w = send(fd, b, n, MSG_NOSIGNAL);
		if (w < 0 && errno == ENOTSOCK)
			w = write(fd, b, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return false;
		b += w;
		n -= (size_t)w;
	}
	return true;
}

bool sp_raw_get_all(int fd, void *p, size_t n, uint64_t deadline_ms)
{
	uint8_t *b = p;
	while (n) {
		uint64_t now = sp_raw_now_ms();
		if (now >= deadline_ms)
			return false;
		uint64_t left = deadline_ms - now;
		struct pollfd pf = { .fd = fd, .events = POLLIN };
		int r = poll(&pf, 1, left > 1000 ? 1000 : (int)left);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return false;
		if (r == 0)
			continue; /* the deadline is checked above */
		ssize_t got = read(fd, b, n);
		if (got < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (got <= 0)
			return false;
		b += got;
		n -= (size_t)got;
	}
	return true;
}
