#!/usr/bin/env python3
"""The README's first C++ block must be examples/readme/main.cpp, which CI compiles, so it cannot rot; and
.ci/run must call the test command the README gives."""
import pathlib
import re
import sys

root = pathlib.Path(sys.argv[1])
readme = (root / "README.md").read_text()
first_cpp_block = re.search(r"```cpp\n(.*?)```", readme, re.S).group(1)
example = (root / "examples/readme/main.cpp").read_text()
if first_cpp_block != example:
    sys.exit("README's first C++ block differs from examples/readme/main.cpp")
commands = re.findall(r"```sh\n(.*?)\n```", readme, re.S)
if len(commands) != 2 or commands[1] not in (root / ".ci/run").read_text():
    sys.exit(f"README should give two commands and .ci/run should call the second: {commands}")
print("README example matches examples/readme/main.cpp; .ci/run calls", commands[1])
