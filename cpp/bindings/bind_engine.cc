#include "bindings/bind_engine.h"

#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include "bindings/columns_arg.h"
#include "engine/rehearsal_engine.h"
#include "transport/transport.h"
#ifdef REVERIE_HAVE_MPI
#include "transport/mpi/mpi_transport.h"
#endif
#ifdef REVERIE_HAVE_THALLIUM
#include "transport/thallium/bind_thallium.h"
#endif

namespace py = pybind11;

namespace reverie {
namespace {

using Ptrs = std::vector<uintptr_t>;

std::chrono::milliseconds ms(double seconds) {
  if (!(seconds >= 0)) throw std::invalid_argument("timeout: expected seconds >= 0");
  return std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000.0));
}

// Byte arrays over an engine's receive block; each keeps the engine alive while in use.
py::list block_arrays(py::object self, uint64_t which) {
  const auto& engine = self.cast<const RehearsalEngine&>();
  const SampleLayout& layout = engine.buffer().layout();
  const Columns& cols = engine.block(which);
  py::list out;
  for (size_t c = 0; c < layout.num_columns(); ++c) {
    const auto n = static_cast<py::ssize_t>(layout.row_bytes(c) * cols.rows);
    out.append(py::array_t<uint8_t>({n}, {1}, reinterpret_cast<uint8_t*>(cols.base[c]), self));
  }
  const auto r = static_cast<py::ssize_t>(cols.rows);
  out.append(py::array_t<int32_t>({r}, {sizeof(int32_t)}, const_cast<int32_t*>(engine.ranks(which)), self));
  return out;
}

py::dict stats_of(const RehearsalEngine& e) {
  const EngineStats s = e.stats();
  py::dict d;
  d["draws"] = s.draws;
  d["rows_drawn"] = s.rows_drawn;
  d["rows_remote"] = s.rows_remote;
  d["bytes_remote"] = s.bytes_remote;
  d["inserts"] = s.inserts;
  d["rows_offered"] = s.rows_offered;
  d["fetch_s"] = s.fetch_ns * 1e-9;
  d["insert_s"] = s.insert_ns * 1e-9;
  d["add_wait_s"] = s.add_wait_ns * 1e-9;
  d["failed_requests"] = s.failed_requests;
  return d;
}

void bind_transports(py::module_& m) {
  py::class_<Transport, std::shared_ptr<Transport>>(m, "Transport")
      .def_property_readonly("rank", &Transport::rank)
      .def_property_readonly("world_size", &Transport::world_size)
      .def_property_readonly("name", &Transport::name);
#ifdef REVERIE_HAVE_MPI
  m.attr("HAVE_MPI") = true;
  m.def(
      "mpi_transport",
      [](std::shared_ptr<LocalBuffer> buffer, int64_t comm_f, uint64_t token, uint32_t max_rows, double timeout) {
        MPI_Comm comm = MPI_Comm_f2c(static_cast<MPI_Fint>(comm_f));
        py::gil_scoped_release release;
        return std::shared_ptr<Transport>(
            std::make_shared<MpiTransport>(std::move(buffer), comm, MpiTransportOptions{token, max_rows, ms(timeout)}));
      },
      py::arg("buffer"), py::arg("comm_f"), py::arg("token"), py::arg("max_rows"), py::arg("timeout"));
#else
  m.attr("HAVE_MPI") = false;
#endif
#ifdef REVERIE_HAVE_THALLIUM
  m.attr("HAVE_THALLIUM") = true;
  bind_thallium(m);
#else
  m.attr("HAVE_THALLIUM") = false;
#endif
}

}  // namespace

void bind_engine(py::module_& m) {
  bind_transports(m);
  py::class_<RehearsalEngine>(m, "Engine")
      .def(py::init([](std::shared_ptr<LocalBuffer> buffer, std::shared_ptr<Transport> transport,
                       uint32_t max_representatives, uint32_t candidates, size_t queue_blocks, size_t queue_rows,
                       double timeout, uint64_t seed) {
             EngineOptions o{max_representatives, candidates, queue_blocks, queue_rows, ms(timeout), seed};
             return std::make_unique<RehearsalEngine>(std::move(buffer), std::move(transport), o);
           }),
           py::arg("buffer"), py::arg("transport"), py::arg("max_representatives"), py::arg("candidates"),
           py::arg("queue_blocks"), py::arg("queue_rows"), py::arg("timeout"), py::arg("seed"))
      .def_property_readonly("rank", &RehearsalEngine::rank)
      .def_property_readonly("world_size", &RehearsalEngine::world_size)
      .def(
          "add",
          [](RehearsalEngine& e, const Ptrs& ptrs, size_t n) {
            auto cols = columns_arg<ConstColumns>(e.buffer().layout(), ptrs, n);
            py::gil_scoped_release release;
            e.add(cols);
          },
          py::arg("ptrs"), py::arg("n"))
      .def(
          "flush",
          [](RehearsalEngine& e, double timeout) {
            py::gil_scoped_release release;
            return e.flush(ms(timeout));
          },
          py::arg("timeout"))
      .def("request", &RehearsalEngine::request, py::arg("r"), py::call_guard<py::gil_scoped_release>())
      .def("done", &RehearsalEngine::done, py::arg("ticket"))
      .def(
          "wait",
          [](const RehearsalEngine& e, uint64_t ticket, double timeout) {
            py::gil_scoped_release release;
            return e.wait(ticket, ms(timeout));
          },
          py::arg("ticket"), py::arg("timeout"))
      .def("rows", &RehearsalEngine::rows, py::arg("ticket"))
      .def("block_arrays", &block_arrays, py::arg("which"))
      .def("known_sizes", &RehearsalEngine::known_sizes)
      .def("excluded_peers", &RehearsalEngine::excluded_peers)
      .def("stats", &stats_of)
      .def("close", &RehearsalEngine::close, py::call_guard<py::gil_scoped_release>())
      .def("abandon", &RehearsalEngine::abandon, py::call_guard<py::gil_scoped_release>());
}

}  // namespace reverie
