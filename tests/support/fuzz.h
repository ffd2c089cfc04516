/*
 * fuzz.h: the libFuzzer entry point, and the check the targets use.
 *
 * A target is built twice: with clang as a real libFuzzer binary
 * (-fsanitize=fuzzer), and always as fuzz_replay, a plain main() that feeds
 * it built-in seeds, corpus files and their simple mutations, so the entry
 * points compile and run in every ctest lane.
 */
#ifndef KMS_TESTS_FORMAT_FUZZ_H
#define KMS_TESTS_FORMAT_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The replay driver (fuzz_replay.c), shared by every target's replay test:
 * fuzz_replay_run feeds one input (copied to a block of exactly its size);
 * fuzz_replay_mutations feeds it, every prefix, byte flips and appends. */
void fuzz_replay_run(const uint8_t *data, size_t len);
void fuzz_replay_mutations(const uint8_t *data, size_t len);

/* A target's own seeds and options, run before the corpus files: returns -1
 * to go on, or the exit code to stop with. fuzz_replay.c has a default
 * that does nothing; a target replaces it by defining this function. */
int fuzz_replay_target_seeds(int argc, char **argv);

/* A broken invariant is a crash: libFuzzer saves the input, replay fails. */
#define FUZZ_CHECK(cond)                                                       \
	do {                                                                   \
		if (!(cond)) {                                                 \
			fprintf(stderr, "%s:%d: invariant failed: %s\n",       \
			        __FILE__, __LINE__, #cond);                    \
			abort();                                               \
		}                                                              \
	} while (0)

#endif
