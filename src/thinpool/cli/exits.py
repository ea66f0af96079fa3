"""Exit codes shared by every command (doctor adds its own severities)."""

EXIT_OK = 0
EXIT_ERROR = 1  # an error, a refusal, or a run that did not do all it should
EXIT_CHANGES = 2
EXIT_INTERRUPTED = 130

EXIT_CODES_HELP = """exit codes:
  0    success; with --detailed-exitcode: nothing to change
  1    error or refusal (the message names the problem and the fix)
  2    with --detailed-exitcode: there are changes
  130  interrupted"""
