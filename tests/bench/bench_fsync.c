/*
 * bench_fsync: the disk's durability floor, the baseline of a request's
 * latency at one in flight. It does what kmsd's audit writer does for a
 * batch of one entry: pwrite a record at the end of a file, then
 * fdatasync it; one thread, one record at a time.
 *
 *   bench_fsync DIR [max-ops] [max-seconds] [--json FILE] [--label k=v]...
 *
 * DIR: a directory on the disk kmsd's data_dir uses (a file is made in it
 * and removed). Stops at max-ops (default 5000) or max-seconds (default
 * 3), whichever comes first. Prints a line for a human and, with --json,
 * appends one JSON line in the benchmark record format (docs/kms-bench.md;
 * tool "bench_fsync", op "fdatasync", transport "disk"). A benchmark, not a
 * test: it fails only when a write or a flush does.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#define RECORD_LEN 420 /* about one audit entry with its length and hash */
#define MAX_LABELS 8

static double now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static double cpu_us(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e6 +
	       (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

static double pct(const double *sorted, size_t n, double p)
{
	size_t i = (size_t)(p * (double)(n - 1) + 0.5);
	return sorted[i < n ? i : n - 1];
}

static int usage(void)
{
	fprintf(stderr, "usage: bench_fsync DIR [max-ops] [max-seconds] [--json FILE] "
	                "[--label key=value]...\n");
	return 2;
}

int main(int argc, char **argv)
{
	const char *dir = NULL, *json = NULL, *labels[MAX_LABELS];
	size_t n_labels = 0, max_ops = 5000, pos = 0;
	double max_s = 3;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--json") && i + 1 < argc) {
			json = argv[++i];
		} else if (!strcmp(argv[i], "--label") && i + 1 < argc) {
			if (n_labels == MAX_LABELS || !strchr(argv[i + 1], '=') ||
			    strpbrk(argv[i + 1], "\"\\"))
				return usage();
			labels[n_labels++] = argv[++i];
		} else if (pos == 0) {
			dir = argv[i];
			pos++;
		} else if (pos == 1) {
			max_ops = strtoul(argv[i], NULL, 10);
			pos++;
		} else if (pos == 2) {
			max_s = strtod(argv[i], NULL);
			pos++;
		} else {
			return usage();
		}
	}
	if (!dir || max_ops < 1 || max_ops > 1000000 || !(max_s > 0 && max_s <= 600))
		return usage();

	char path[4096];
	snprintf(path, sizeof path, "%s/bench-fsync.%ld", dir, (long)getpid());
	int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0) {
		fprintf(stderr, "bench_fsync: cannot create a file in %s: %s\n", dir, strerror(errno));
		return 1;
	}
	double *lat = calloc(max_ops, sizeof *lat);
	unsigned char record[RECORD_LEN];
	memset(record, 0xa5, sizeof record);
	int rc = 0;
	size_t done = 0;
	double cpu0 = cpu_us(), t0 = now_us(), t = t0;
	while (lat && done < max_ops && t - t0 < max_s * 1e6) {
		double start = now_us();
		if (pwrite(fd, record, sizeof record, (off_t)(done * sizeof record)) !=
		        (ssize_t)sizeof record ||
		    fdatasync(fd) != 0) {
			fprintf(stderr, "bench_fsync: write or fdatasync in %s: %s\n", dir,
			        strerror(errno));
			rc = 1;
			break;
		}
		t = now_us();
		lat[done++] = t - start;
	}
	double secs = (t - t0) / 1e6, cpu = cpu_us() - cpu0;
	close(fd);
	unlink(path);
	if (!lat || done == 0) {
		free(lat);
		fprintf(stderr, "bench_fsync: nothing measured\n");
		return 1;
	}
	qsort(lat, done, sizeof *lat, cmp_double);
	double rate = (double)done / secs;
	printf("fdatasync of a %d-byte append in %s: %zu in %.2f s, %.0f/s, p50 %.1f us, "
	       "p99 %.1f us, max %.1f us\n", RECORD_LEN, dir, done, secs, rate,
	       pct(lat, done, 0.50), pct(lat, done, 0.99), lat[done - 1]);
	if (json) {
		FILE *f = fopen(json, "a");
		if (!f) {
			fprintf(stderr, "bench_fsync: cannot open %s: %s\n", json, strerror(errno));
			free(lat);
			return 1;
		}
		fprintf(f, "{\"tool\":\"bench_fsync\",\"op\":\"fdatasync\",\"transport\":\"disk\","
		           "\"concurrency\":1,\"batch_items\":0,\"plaintext_bytes\":%d,"
		           "\"requests\":%zu,\"ok\":%zu,\"items\":%zu,\"seconds\":%.3f,"
		           "\"ops_per_s\":%.1f,\"items_per_s\":%.1f,\"p50_us\":%.1f,\"p99_us\":%.1f,"
		           "\"p999_us\":%.1f,\"max_us\":%.1f,\"cpu_us_per_op\":%.1f,\"errors\":{},"
		           "\"labels\":{",
		        RECORD_LEN, done, done, done, secs, rate, rate, pct(lat, done, 0.50),
		        pct(lat, done, 0.99), pct(lat, done, 0.999), lat[done - 1],
		        cpu / (double)done);
		for (size_t i = 0; i < n_labels; i++) {
			const char *eq = strchr(labels[i], '=');
			fprintf(f, "%s\"%.*s\":\"%s\"", i ? "," : "", (int)(eq - labels[i]), labels[i],
			        eq + 1);
		}
		fprintf(f, "}}\n");
		if (fclose(f) != 0)
			rc = 1;
	}
	free(lat);
	return rc;
}
