/*
 * bench_hsm_ops.h: bench_hsm's --ops mode (bench_hsm_ops.c), the PKCS#11
 * work of each kmsd operation as a baseline for the kmsd benchmarks.
 */
#ifndef KMS_BENCH_HSM_OPS_H
#define KMS_BENCH_HSM_OPS_H

/* argv[1] is "--ops"; the options follow it. Opens the hsm on the token
 * tests/support/with-token names in the environment. Returns the process's
 * exit status: 0, 1 when an operation or a write failed, 2 for a usage
 * error or a missing environment. */
int bench_hsm_ops_main(int argc, char **argv);

#endif
