/* kms: see tool.c for the commands. */
#include "clients/cli/tool.h"

int main(int argc, char **argv)
{
	cli_json_wipe_on_free();
	return cli_main(TOOL_PROG, TOOL_ABOUT, tool_commands, argc, argv, NULL, NULL);
}
