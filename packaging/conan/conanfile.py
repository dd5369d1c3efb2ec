import os
import re

from conan import ConanFile
from conan.tools.build import check_min_cppstd
from conan.tools.files import copy, load
from conan.tools.layout import basic_layout

required_conan_version = ">=2.0"


class TetherConan(ConanFile):
    name = "tether"
    description = ("Header-only C++20 library on standalone Asio that keeps long-lived TCP connections healthy: "
                   "portable keepalive and user-timeout options, heartbeats, idle reaping, close reasons.")
    license = "BSL-1.0"
    url = "https://github.com/tether-cpp/tether"
    homepage = "https://github.com/tether-cpp/tether"
    topics = ("tcp", "keepalive", "heartbeat", "asio", "networking", "header-only")
    package_type = "header-library"
    settings = "os", "arch", "compiler", "build_type"
    no_copy_source = True

    # The recipe lives in packaging/conan; the sources are the repository around it.
    @property
    def _repository_root(self):
        return os.path.join(self.recipe_folder, "..", "..")

    def set_version(self):
        header = load(self, os.path.join(self._repository_root, "include", "tether", "version.hpp"))
        parts = [re.search(rf"#define TETHER_VERSION_{part} (\d+)", header).group(1)
                 for part in ("MAJOR", "MINOR", "PATCH")]
        self.version = ".".join(parts)

    def export_sources(self):
        copy(self, "include/*", self._repository_root, self.export_sources_folder)
        copy(self, "LICENSE", self._repository_root, self.export_sources_folder)

    def layout(self):
        basic_layout(self, src_folder=".")

    def requirements(self):
        self.requires("asio/[>=1.22 <2]", transitive_headers=True)
        self.requires("fmt/[>=9]", transitive_headers=True)

    def package_id(self):
        self.info.clear()

    def validate(self):
        check_min_cppstd(self, 20)

    def package(self):
        copy(self, "LICENSE", self.source_folder, os.path.join(self.package_folder, "licenses"))
        copy(self, "*.hpp", os.path.join(self.source_folder, "include"), os.path.join(self.package_folder, "include"))

    def package_info(self):
        self.cpp_info.set_property("cmake_file_name", "tether")
        self.cpp_info.set_property("cmake_target_name", "tether::tether")
        self.cpp_info.set_property("pkg_config_name", "tether")
        self.cpp_info.requires = ["asio::asio", "fmt::fmt"]
        self.cpp_info.defines = ["ASIO_STANDALONE"]
        self.cpp_info.bindirs = []
        self.cpp_info.libdirs = []
        if self.settings.os in ("Linux", "FreeBSD"):
            self.cpp_info.system_libs = ["pthread"]
