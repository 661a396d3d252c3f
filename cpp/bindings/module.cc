// The private extension module `reverie._core`. Python validates tensors and passes raw
// column pointers; every call that copies or waits releases the GIL.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "bindings/bind_buffer.h"
#include "bindings/bind_engine.h"

PYBIND11_MODULE(_core, m) {
  m.doc() = "Reverie C++ core: rehearsal buffer storage, policy, sampling and transports";
  reverie::bind_buffer(m);
  reverie::bind_engine(m);
}
