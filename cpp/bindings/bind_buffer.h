#pragma once
#include <pybind11/pybind11.h>

namespace reverie {
void bind_buffer(pybind11::module_& m);
}
