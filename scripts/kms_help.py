"""kms_help: the programs' own --help text, walked and read.

One walk for everything made from --help, so that none of it can say other
than the programs: scripts/make-man (the manual pages), scripts/make-completion
(bash completion) and its test (tests/clients/cli/completion-test)."""
import os
import re
import subprocess
import sys

# A metavar that names a path: its value is completed as a file name
# (a directory for the DIR ones).
FILE_METAVARS = {"FILE", "CONFIG", "PATH", "SRC", "DST"}
DIR_METAVARS = {"DIR", "LOGDIR"}


def help_of(argv):
    """The program's --help text (stdout or stderr) as lines."""
    run = subprocess.run(argv + ["--help"], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True, timeout=30,
                         env=dict(os.environ, NO_COLOR="1"))
    text = run.stdout.rstrip("\n")
    if not text:
        sys.exit("%s: %s --help printed nothing" % (os.path.basename(sys.argv[0]),
                                                  " ".join(argv)))
    return text.split("\n")


def split_top(lines):
    """A CLI's top --help: (usage, about, commands, rest)."""
    usage = lines[0]
    about = lines[1] if len(lines) > 1 and not lines[1].startswith(" ") else ""
    commands, rest, i = [], [], 0
    while i < len(lines) and lines[i] != "Commands:":
        i += 1
    if i == len(lines):
        sys.exit("%s: no 'Commands:' in the --help text" % os.path.basename(sys.argv[0]))
    i += 1
    while i < len(lines) and lines[i].startswith("  "):
        name = re.split(r"\s{2,}", lines[i].strip())[0]
        commands.append(name)
        i += 1
    rest = lines[i:]
    while rest and not rest[0].strip():
        rest = rest[1:]
    return usage, about, commands, rest


# An option line of --help: "  -i, --in FILE   text", "  --json   text",
# "  -c CONFIG  text".
OPTION_LINE = re.compile(r"^  (?:(-\w), )?(--?[a-zA-Z][\w-]*)(?: (\S+))?(?:\s{2,}|$)")
CHOICES = re.compile(r"[a-z0-9_-]+(\|[a-z0-9_-]+)+")
USAGE_FLAG = re.compile(r"^[\[(]*(--?[a-zA-Z][\w-]*)")


def _usage_options(usage_lines):
    """{flag: metavar or None} from usage lines ("[--mode auto|direct|envelope]",
    "(--signature FILE|--signature-base64 B64)", "[-f [--until-size S]]")."""
    found = {}
    for line in usage_lines:
        tokens = line.split()
        for i, token in enumerate(tokens):
            # The word after a flag is its value ("--key KEY"), shared by the
            # token's alternatives ("[-i|--in FILE|-]").
            value = None
            nxt = tokens[i + 1] if i + 1 < len(tokens) else ""
            last = USAGE_FLAG.match(token.split("|")[-1])
            if last and last.end() == len(token.split("|")[-1]) and nxt and \
               not nxt.startswith(("-", "[", "(", "|")):
                value = nxt.split("|-")[0].rstrip("])")
            for part in token.split("|"):
                m = USAGE_FLAG.match(part)
                if m and m.end() == len(part):
                    found.setdefault(m.group(1), value)
                elif m:
                    found.setdefault(m.group(1), None)
    return found


def _positional_paths(usage):
    """True when the usage names a path as a positional argument (FILE, DIR,
    SRC, DST not right after a flag)."""
    tokens = usage.split()
    for i, token in enumerate(tokens[1:], 1):
        word = token.strip("[]().")
        if word in FILE_METAVARS | DIR_METAVARS and not tokens[i - 1].lstrip("[(").startswith("-"):
            return True
    return False


def options_of(lines, usage_lines):
    """A --help text's options: {flag: {"takes": bool, "path": "file"|"dir"|"",
    "choices": [..]}}; short and long forms each get an entry."""
    opts = {}
    for line in lines:
        m = OPTION_LINE.match(line)
        if not m:
            continue
        short, flag, metavar = m.groups()
        for f in (short, flag):
            if f:
                opts[f] = metavar
    for flag, value in _usage_options(usage_lines).items():
        # A flag the usage alone names; or the usage's choices
        # ("--mode auto|direct|envelope") for the help's metavar ("MODE").
        if flag not in opts or (value and CHOICES.fullmatch(value)):
            opts[flag] = value
    out = {}
    for flag, metavar in opts.items():
        choices = []
        if metavar and CHOICES.fullmatch(metavar):
            choices = metavar.split("|")
        path = ""
        if metavar in FILE_METAVARS or (metavar or "").endswith("FILE"):
            path = "file"
        elif metavar in DIR_METAVARS:
            path = "dir"
        out[flag] = {"takes": metavar is not None, "path": path, "choices": choices}
    return out


def cli_tree(binary):
    """A CLI (kms, kms-admin): {"top": options, "commands": {command:
    {"options": ..., "positional_path": bool}}}, every command's --help read."""
    top_lines = help_of([binary])
    usage, _, commands, rest = split_top(top_lines)
    tree = {"top": options_of(rest, [usage]), "commands": {}}
    for cmd in commands:
        lines = help_of([binary] + cmd.split())
        usage_lines = [lines[0]] if lines and lines[0].startswith("usage:") else []
        tree["commands"][cmd] = {
            "options": options_of(lines, usage_lines),
            "positional_path": bool(usage_lines) and _positional_paths(usage_lines[0]),
        }
    return tree


def daemon_options(binary):
    """kmsd's options, from its --help (usage lines and option lines)."""
    lines = help_of([binary])
    usage = [line for line in lines if line.startswith("usage:") or re.match(r"^ {7}kmsd ", line)]
    return options_of([line for line in lines if line not in usage], usage)
