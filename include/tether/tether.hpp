// The whole public API of tether.
#pragma once

#include <tether/error.hpp>
#include <tether/format.hpp>
#include <tether/socket_options.hpp>
#include <tether/version.hpp>
