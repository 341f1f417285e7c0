// doctest entry point for the integration tests (real binary, real redis-server).
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>
