/*
 * consumer: a program built against an installed libkmsclient (by
 * check-install, once through pkg-config, once through find_package(kms)).
 * It opens a client on an ipc:// endpoint with nothing listening and asks
 * for kmsd's health: the documented answer is KMS_UNAVAILABLE at once, so
 * no kmsd is needed. It also takes and wipes a block of secure memory.
 */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <kms/client.h>

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: consumer ipc://PATH\n");
		return 2;
	}
	const char *endpoints[1] = { argv[1] };
	kms_client_options opts = { .endpoints = endpoints, .n_endpoints = 1,
	                            .no_env_credentials = true };
	kms_client *client = NULL;
	kms_error err;
	memset(&err, 0, sizeof err);
	kms_status st = kms_client_open(&opts, &client, &err);
	if (st != KMS_OK) {
		fprintf(stderr, "consumer: open: %s: %s\n", kms_status_name(st), err.message);
		return 1;
	}
	kms_health health;
	memset(&health, 0, sizeof health);
	st = kms_health_check(client, &health, &err);
	kms_health_free(&health);
	kms_client_close(client);

	void *secret = kms_secure_alloc(32);
	if (!secret) {
		fprintf(stderr, "consumer: kms_secure_alloc failed\n");
		return 1;
	}
	kms_secure_free(secret);

	printf("health: %s (%s)\n", kms_status_name(st), kms_status_name(KMS_OK));
	return st == KMS_UNAVAILABLE ? 0 : 1;
}
