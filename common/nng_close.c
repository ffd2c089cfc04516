#include "common/nng_close.h"

#include <pthread.h>
#include <stdlib.h>
#include <time.h>

typedef struct closer {
	nng_socket sock;
	bool fini; /* nng_fini() rather than nng_close(sock) */
	pthread_mutex_t lock;
	pthread_cond_t done_cv;
	bool done;
	bool abandoned; /* the waiter gave up: the closer frees this */
} closer;

static void run(nng_socket sock, bool fini)
{
	if (fini)
		nng_fini();
	else
		nng_close(sock);
}

static void *close_socket(void *arg)
{
	closer *c = arg;
	run(c->sock, c->fini);
	pthread_mutex_lock(&c->lock);
	c->done = true;
	bool abandoned = c->abandoned;
	pthread_cond_signal(&c->done_cv);
	pthread_mutex_unlock(&c->lock);
	if (abandoned) {
		pthread_mutex_destroy(&c->lock);
		pthread_cond_destroy(&c->done_cv);
		free(c);
	}
	return NULL;
}

static bool run_bounded(nng_socket sock, bool fini, unsigned wait_ms)
{
	closer *c = calloc(1, sizeof *c);
	pthread_t thread;
	if (!c) {
		/* No thread to wait on: do it here, unbounded. */
		run(sock, fini);
		return true;
	}
	c->sock = sock;
	c->fini = fini;
	pthread_mutex_init(&c->lock, NULL);
	pthread_cond_init(&c->done_cv, NULL);
	if (pthread_create(&thread, NULL, close_socket, c) != 0) {
		pthread_mutex_destroy(&c->lock);
		pthread_cond_destroy(&c->done_cv);
		free(c);
		run(sock, fini);
		return true;
	}
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += wait_ms / 1000;
	until.tv_nsec += (long)(wait_ms % 1000) * 1000000L;
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&c->lock);
	while (!c->done && pthread_cond_timedwait(&c->done_cv, &c->lock, &until) == 0)
		;
	bool done = c->done;
	if (!done)
		c->abandoned = true;
	pthread_mutex_unlock(&c->lock);
	if (done) {
		pthread_join(thread, NULL);
		pthread_mutex_destroy(&c->lock);
		pthread_cond_destroy(&c->done_cv);
		free(c);
		return true;
	}
	pthread_detach(thread);
	return false;
}

bool kms_nng_close_bounded(nng_socket sock, unsigned wait_ms)
{
	return run_bounded(sock, false, wait_ms);
}

bool kms_nng_fini_bounded(unsigned wait_ms)
{
	nng_socket none = NNG_SOCKET_INITIALIZER;
	return run_bounded(none, true, wait_ms);
}
