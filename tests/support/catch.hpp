// Lets the tests build against Catch2 v2 (Debian) and v3 (vcpkg, Conan) alike.
#pragma once

#if defined(TETHER_CATCH3)
#include <catch2/catch_all.hpp>
#else
#include <catch2/catch.hpp>
#endif
