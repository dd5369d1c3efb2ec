#!/usr/bin/env python3
"""Checks that the vcpkg port and the Conan recipe describe the package CMake builds: the same name, version,
dependencies, license and target. Neither tool is needed: the manifests are parsed, the recipe compiled."""
import ast
import json
import pathlib
import re
import sys

root = pathlib.Path(sys.argv[1])
failures = []


def expect(condition, message):
    if not condition:
        failures.append(message)


header = (root / "include/tether/version.hpp").read_text()
version = ".".join(re.search(rf"#define TETHER_VERSION_{p} (\d+)", header).group(1) for p in ("MAJOR", "MINOR", "PATCH"))
cmake_deps = set(re.findall(r"find_package\((\w+) [\d.]+ REQUIRED", (root / "cmake/tetherDependencies.cmake").read_text()))
expect(cmake_deps == {"asio", "fmt"}, f"CMake dependencies are {sorted(cmake_deps)}, expected asio and fmt")
expect("NAMESPACE tether::" in (root / "cmake/tetherInstall.cmake").read_text(), "CMake exports no tether:: namespace")
expect(re.search(r"project\(tether\b", (root / "CMakeLists.txt").read_text()), "CMake project is not named tether")

port = root / "packaging/vcpkg/tether"
manifest = json.loads((port / "vcpkg.json").read_text())
expect(manifest["name"] == "tether", "vcpkg.json name")
expect(manifest["version"] == version, f"vcpkg.json version {manifest['version']} != {version}")
expect(manifest["license"] == "BSL-1.0", "vcpkg.json license")
runtime_deps = {d for d in manifest["dependencies"] if isinstance(d, str)}
expect(runtime_deps == cmake_deps, f"vcpkg.json dependencies {sorted(runtime_deps)} != CMake's {sorted(cmake_deps)}")
usage = (port / "usage").read_text()
expect("find_package(tether CONFIG REQUIRED)" in usage and "tether::tether" in usage, "vcpkg usage names another target")
expect("share/cmake/tether" in (port / "portfile.cmake").read_text(), "portfile fixes up another config path")

recipe_path = root / "packaging/conan/conanfile.py"
compile(recipe_path.read_text(), str(recipe_path), "exec")  # a syntax error fails here, nothing is written
recipe = ast.parse(recipe_path.read_text())
attributes = {}
calls = []
for node in ast.walk(recipe):
    if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
        try:
            attributes[node.targets[0].id] = ast.literal_eval(node.value)
        except ValueError:
            pass
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.args:
        try:
            calls.append((node.func.attr, [ast.literal_eval(a) for a in node.args]))
        except ValueError:
            pass
expect(attributes.get("name") == "tether", "conanfile name")
expect(attributes.get("license") == "BSL-1.0", "conanfile license")
expect(attributes.get("package_type") == "header-library", "conanfile package_type")
requires = {args[0].split("/")[0] for method, args in calls if method == "requires"}
expect(requires == cmake_deps, f"conanfile requires {sorted(requires)} != CMake's {sorted(cmake_deps)}")
properties = {args[0]: args[1] for method, args in calls if method == "set_property" and len(args) == 2}
expect(properties.get("cmake_file_name") == "tether", "conanfile cmake_file_name")
expect(properties.get("cmake_target_name") == "tether::tether", "conanfile cmake_target_name")
expect("TETHER_VERSION_" in recipe_path.read_text(), "conanfile does not read the version from version.hpp")

for failure in failures:
    print(f"manifest mismatch: {failure}")
print(f"tether {version}: vcpkg port and Conan recipe {'agree' if not failures else 'DISAGREE'} with CMake")
sys.exit(1 if failures else 0)
