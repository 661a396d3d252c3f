// The private extension module `reverie._core` (CMake names it; `_core_mpi` in a build whose
// MPI is optional at run time). Python validates tensors and passes raw column pointers;
// every call that copies or waits releases the GIL.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "bindings/bind_buffer.h"
#include "bindings/bind_engine.h"
#include "common/errors.h"

namespace py = pybind11;

PYBIND11_MODULE(REVERIE_MODULE_NAME, m) {
  m.doc() = "Reverie C++ core: rehearsal buffer storage, policy, sampling and transports";
  py::register_exception<reverie::TimeoutError>(m, "TimeoutError", PyExc_TimeoutError);
  reverie::bind_buffer(m);
  reverie::bind_engine(m);
}
