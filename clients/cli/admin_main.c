/* kms-admin: see admin.c for the commands. */
#include "clients/cli/admin.h"

int main(int argc, char **argv)
{
	cli_json_wipe_on_free();
	return cli_main(ADMIN_PROG, ADMIN_ABOUT, admin_commands, argc, argv, NULL, NULL);
}
