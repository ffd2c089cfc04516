/*
 * bench_load.c: one run of kms-bench. The main thread starts --concurrency
 * chains (spread over --connections clients); each chain has one request in flight at a time, and the
 * callback that ends one (on an NNG thread) records it and starts the
 * chain's next, until --requests have been started or --duration has
 * passed. The main thread only waits, bounded, for the last answer.
 */
#include "clients/bench/bench.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

/* Past the run's end, how long the main thread waits for the answers still
 * out, beyond the client's own timeout (which ends each of them). */
#define LOAD_DRAIN_SLACK_S 5

typedef struct load load;

typedef struct chain {
	load *load;
	kms_client *client;  /* of the run's connections, chain i % n */
	uint64_t t0_ns; /* when its request in flight was started */
} chain;

struct load {
	const bench_plan *plan;
	bench_result *result; /* NULL: warm-up, nothing recorded */
	pthread_mutex_t lock;
	pthread_cond_t cond;  /* in_flight reached 0 */
	uint64_t max;         /* requests to start, at most */
	uint64_t started;
	uint64_t in_flight;
	uint64_t end_ns;      /* no request starts after this */
	uint64_t first_ns;
	uint64_t last_ns;     /* the last answer */
};

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static double cpu_seconds(void)
{
	struct rusage ru;
	if (getrusage(RUSAGE_SELF, &ru) != 0)
		return 0.0;
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
	       (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/* Records one finished request (lock held). */
static void record(load *l, uint64_t latency_ns, bool ok, kms_status status, bool timed_out,
                   const char *why)
{
	bench_result *r = l->result;
	if (!r)
		return;
	r->requests++;
	bench_hist_add(&r->hist, latency_ns);
	if (ok) {
		r->ok++;
		return;
	}
	size_t kind = timed_out ? BENCH_ERROR_TIMEOUT
	                        : (size_t)status <= KMS_STATUS_MAX ? (size_t)status : KMS_INTERNAL;
	r->errors[kind]++;
	if (!r->first_error[0])
		snprintf(r->first_error, sizeof r->first_error, "%s: %.*s",
		         bench_error_name(kind), KMS_ERROR_MESSAGE_MAX - 1, why);
}

/* Whether the run goes on (lock held): then *seq numbers the next request. */
static bool next_seq(load *l, uint64_t *seq)
{
	if (l->started >= l->max || now_ns() >= l->end_ns)
		return false;
	*seq = l->started++;
	return true;
}

/* One request fewer in flight (lock held). */
static void ended(load *l)
{
	if (--l->in_flight == 0)
		pthread_cond_broadcast(&l->cond);
}

static void on_answer(void *arg, kms_async_result *r);

/* Starts request seq of the chain, already counted in flight. One that
 * cannot be started counts as failed and ends the chain. */
static void chain_start(chain *c, uint64_t seq)
{
	load *l = c->load;
	c->t0_ns = now_ns();
	kms_error err;
	kms_status st = bench_plan_start(l->plan, c->client, seq, on_answer, c, &err);
	if (st == KMS_OK)
		return;
	pthread_mutex_lock(&l->lock);
	record(l, now_ns() - c->t0_ns, false, st, false, err.message);
	l->last_ns = now_ns();
	ended(l);
	pthread_mutex_unlock(&l->lock);
}

/* On an NNG thread: one answer (or failure). Records it and, while the
 * run goes on, starts the chain's next request in its place: the count in
 * flight reaches 0 only when the chain ends, so the main thread never
 * frees the run under a callback that still uses it. */
static void on_answer(void *arg, kms_async_result *r)
{
	chain *c = arg;
	load *l = c->load;
	uint64_t t = now_ns(), seq = 0;
	kms_status status = KMS_OK;
	char why[KMS_ERROR_MESSAGE_MAX];
	why[0] = '\0';
	bool ok = bench_plan_check(l->plan, r, &status, why, sizeof why);
	pthread_mutex_lock(&l->lock);
	record(l, t - c->t0_ns, ok, status, r->timed_out, why);
	l->last_ns = t;
	bool more = next_seq(l, &seq);
	if (!more)
		ended(l);
	pthread_mutex_unlock(&l->lock);
	if (more)
		chain_start(c, seq);
}

static bool load_init(load *l)
{
	pthread_condattr_t attr;
	if (pthread_condattr_init(&attr) != 0)
		return false;
	bool ok = pthread_condattr_setclock(&attr, CLOCK_MONOTONIC) == 0 &&
	          pthread_cond_init(&l->cond, &attr) == 0;
	pthread_condattr_destroy(&attr);
	if (!ok)
		return false;
	if (pthread_mutex_init(&l->lock, NULL) != 0) {
		pthread_cond_destroy(&l->cond);
		return false;
	}
	return true;
}

/* Waits until nothing is in flight, at most until deadline_ns. */
static bool drain(load *l, uint64_t deadline_ns)
{
	struct timespec until = { .tv_sec = (time_t)(deadline_ns / 1000000000u),
	                          .tv_nsec = (long)(deadline_ns % 1000000000u) };
	pthread_mutex_lock(&l->lock);
	while (l->in_flight > 0) /* bounded by until */
		if (pthread_cond_timedwait(&l->cond, &l->lock, &until) == ETIMEDOUT)
			break;
	bool drained = l->in_flight == 0;
	pthread_mutex_unlock(&l->lock);
	return drained;
}

static void load_free(load *l, chain *chains)
{
	pthread_cond_destroy(&l->cond);
	pthread_mutex_destroy(&l->lock);
	free(chains);
	free(l);
}

bool bench_load_run(const bench_config *cfg, const bench_plan *plan,
                    kms_client *const *clients, size_t n_clients, uint64_t max,
                    uint32_t duration_s, bench_result *result)
{
	if (max == 0)
		return true;
	load *l = calloc(1, sizeof *l);
	chain *chains = calloc(cfg->concurrency, sizeof *chains);
	if (!l || !chains || !load_init(l)) {
		free(l);
		free(chains);
		fprintf(stderr, "%s: out of memory\n", BENCH_PROG);
		return false;
	}
	l->plan = plan;
	l->result = result;
	l->max = max;
	if (result) {
		memset(result, 0, sizeof *result);
		bench_hist_reset(&result->hist);
	}
	double cpu0 = cpu_seconds();
	l->first_ns = now_ns();
	l->last_ns = l->first_ns;
	l->end_ns = l->first_ns + (uint64_t)duration_s * 1000000000u;
	for (uint32_t i = 0; i < cfg->concurrency; i++) {
		uint64_t seq = 0;
		chains[i].load = l;
		chains[i].client = clients[i % n_clients];
		pthread_mutex_lock(&l->lock);
		bool go = next_seq(l, &seq);
		if (go)
			l->in_flight++;
		pthread_mutex_unlock(&l->lock);
		if (!go)
			break;
		chain_start(&chains[i], seq);
	}
	uint64_t bound = l->end_ns + (uint64_t)cfg->timeout_ms * 1000000u +
	                 (uint64_t)LOAD_DRAIN_SLACK_S * 1000000000u;
	bool drained = drain(l, bound);
	pthread_mutex_lock(&l->lock);
	if (result) {
		result->seconds = (double)(l->last_ns - l->first_ns) / 1e9;
		double cpu = cpu_seconds() - cpu0;
		result->cpu_us_per_op = result->requests ? cpu * 1e6 / (double)result->requests
		                                         : 0.0;
	}
	/* Answers still to come (they end when the client closes) record
	 * nothing more, and start nothing: the run's end has passed. */
	l->result = NULL;
	l->max = 0;
	pthread_mutex_unlock(&l->lock);
	if (!drained) {
		fprintf(stderr, "%s: requests still in flight %u s after the run's end: "
		        "giving up on them\n", BENCH_PROG,
		        (unsigned)((bound - l->end_ns) / 1000000000u));
		return false; /* l and chains stay: the close's callbacks use them */
	}
	load_free(l, chains);
	return true;
}
