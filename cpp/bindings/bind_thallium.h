#pragma once
// Python bindings of the Thallium engine (compiled into reverie._core when it is built).
#include <pybind11/pybind11.h>

namespace reverie {

// Adds `thallium_transport(...)` and its class `ThalliumTransport` (a `Transport`) to `m`;
// `Transport` must already be bound.
void bind_thallium(pybind11::module_& m);

}  // namespace reverie
