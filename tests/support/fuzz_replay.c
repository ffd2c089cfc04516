/*
 * fuzz_replay: runs a fuzz target without libFuzzer, so every compiler and
 * every ctest lane exercises it.
 *
 *   fuzz_replay_X [FILE|DIR]...
 *
 * Feeds the target some built-in seeds, then each file (a directory: each
 * file in it), each file's every prefix, every single-byte flip (three
 * masks) and a few appended bytes. Each input is copied to a heap block of
 * exactly its size, so AddressSanitizer catches a read one past the end.
 * Exits non-zero if a file cannot be read or if files were named but none
 * was found; a broken invariant aborts inside the target.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "tests/support/fuzz.h"

#define REPLAY_FILE_MAX (1u << 20)
#define REPLAY_BUILTIN_FILL 4096
#define REPLAY_APPEND_MAX 3

static const uint8_t flip_masks[] = { 0x01, 0x80, 0xff };
static size_t runs;

void fuzz_replay_run(const uint8_t *data, size_t len)
{
	uint8_t *copy = malloc(len ? len : 1);
	if (!copy) {
		fprintf(stderr, "fuzz_replay: out of memory\n");
		exit(1);
	}
	if (len)
		memcpy(copy, data, len);
	(void)LLVMFuzzerTestOneInput(copy, len);
	free(copy);
	runs++;
}

void fuzz_replay_mutations(const uint8_t *data, size_t len)
{
	static uint8_t work[REPLAY_FILE_MAX + REPLAY_APPEND_MAX];

	fuzz_replay_run(data, len);
	for (size_t cut = 0; cut < len; cut++)
		fuzz_replay_run(data, cut);
	memcpy(work, data, len);
	for (size_t i = 0; i < len; i++) {
		for (size_t m = 0; m < sizeof flip_masks; m++) {
			work[i] ^= flip_masks[m];
			fuzz_replay_run(work, len);
			work[i] ^= flip_masks[m];
		}
	}
	for (size_t extra = 1; extra <= REPLAY_APPEND_MAX; extra++) {
		work[len + extra - 1] = (uint8_t)(0x41 * extra);
		fuzz_replay_run(work, len + extra);
	}
}

static void run_builtin(void)
{
	static uint8_t fill[REPLAY_BUILTIN_FILL + 64];

	fuzz_replay_run(NULL, 0);
	for (unsigned b = 0; b < 256; b++) {
		uint8_t one = (uint8_t)b;
		fuzz_replay_run(&one, 1);
	}
	memset(fill, 0x00, sizeof fill);
	fuzz_replay_run(fill, sizeof fill);
	memset(fill, 0xff, sizeof fill);
	fuzz_replay_run(fill, sizeof fill);
	/* Something that starts like a blob, at every length to a small one. */
	memset(fill, 0x01, sizeof fill);
	memcpy(fill, "KMS\x01", 4);
	for (size_t len = 0; len <= 128; len++)
		fuzz_replay_run(fill, len);
}

static int replay_file(const char *path)
{
	static uint8_t data[REPLAY_FILE_MAX + 1];
	FILE *f = fopen(path, "rb");
	if (!f) {
		fprintf(stderr, "fuzz_replay: %s: %s\n", path, strerror(errno));
		return 1;
	}
	size_t len = fread(data, 1, sizeof data, f);
	int failed = ferror(f);
	fclose(f);
	if (failed || len > REPLAY_FILE_MAX) {
		fprintf(stderr, "fuzz_replay: %s: unreadable or over %u bytes\n", path,
		        REPLAY_FILE_MAX);
		return 1;
	}
	fuzz_replay_mutations(data, len);
	return 0;
}

__attribute__((weak)) int fuzz_replay_target_seeds(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	return -1;
}

static int skip_dots(const struct dirent *e)
{
	return e->d_name[0] != '.';
}

int main(int argc, char **argv)
{
	size_t files = 0;
	int rc = 0;

	int early = fuzz_replay_target_seeds(argc, argv);
	if (early >= 0)
		return early;
	run_builtin();
	for (int i = 1; i < argc; i++) {
		struct stat st;
		if (stat(argv[i], &st) != 0) {
			fprintf(stderr, "fuzz_replay: %s: %s\n", argv[i], strerror(errno));
			return 1;
		}
		if (!S_ISDIR(st.st_mode)) {
			rc |= replay_file(argv[i]);
			files++;
			continue;
		}
		struct dirent **entries;
		int n = scandir(argv[i], &entries, skip_dots, alphasort);
		if (n < 0) {
			fprintf(stderr, "fuzz_replay: %s: %s\n", argv[i], strerror(errno));
			return 1;
		}
		for (int k = 0; k < n; k++) {
			char path[4096];
			int w = snprintf(path, sizeof path, "%s/%s", argv[i], entries[k]->d_name);
			if (w > 0 && (size_t)w < sizeof path) {
				rc |= replay_file(path);
				files++;
			} else {
				rc = 1;
			}
			free(entries[k]);
		}
		free(entries);
	}
	if (argc > 1 && files == 0) {
		fprintf(stderr, "fuzz_replay: no input files found\n");
		return 1;
	}
	printf("fuzz_replay: %zu files, %zu inputs, no invariant broken\n", files, runs);
	return rc;
}
