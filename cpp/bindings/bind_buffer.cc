#include "bindings/bind_buffer.h"

#include <pybind11/stl.h>

#include "bindings/columns_arg.h"
#include "buffer/local_buffer.h"

namespace py = pybind11;

namespace reverie {
namespace {

using Ptrs = std::vector<uintptr_t>;

std::shared_ptr<LocalBuffer> make_buffer(std::vector<size_t> field_bytes, size_t capacity,
                                         std::optional<uint32_t> num_classes, uint32_t candidates, uint64_t seed,
                                         bool passes) {
  return std::make_shared<LocalBuffer>(SampleLayout(std::move(field_bytes)),
                                       BufferOptions{capacity, num_classes, candidates, seed, passes});
}

py::object state_of(const LocalBuffer& buf, const std::optional<Ptrs>& rows, size_t n) {
  std::optional<LocalBuffer::State> snap;
  if (rows) {
    auto cols = columns_arg<Columns>(buf.layout(), *rows, n);
    py::gil_scoped_release release;
    snap = buf.snapshot(&cols);
  } else {
    snap = buf.snapshot(nullptr);
  }
  if (!snap) return py::none();
  const auto& state = *snap;
  py::list classes;
  for (const auto& c : state.classes) classes.append(py::make_tuple(c.label, c.seen, c.members));
  py::dict out;
  out["classes"] = classes;
  out["insert_rng"] = state.insert_rng;
  out["sample_rng"] = state.sample_rng;
  out["saturated"] = state.saturated;
  out["pass"] = py::make_tuple(state.pass.key, state.pass.position, state.pass.n);
  return out;
}

LocalBuffer::State state_from(const py::dict& d) {
  LocalBuffer::State state;
  for (auto item : d["classes"].cast<py::list>()) {
    auto t = item.cast<py::tuple>();
    state.classes.push_back({t[0].cast<int64_t>(), t[1].cast<uint64_t>(), t[2].cast<std::vector<uint32_t>>()});
  }
  state.insert_rng = d["insert_rng"].cast<Rng::State>();
  state.sample_rng = d["sample_rng"].cast<Rng::State>();
  state.saturated = d.contains("saturated") && d["saturated"].cast<bool>();
  if (d.contains("pass")) {  // absent in states saved before passes existed: no pass yet
    auto pass = d["pass"].cast<py::tuple>();
    state.pass = {pass[0].cast<uint64_t>(), pass[1].cast<uint64_t>(), pass[2].cast<uint64_t>()};
  }
  return state;
}

void restore_from(LocalBuffer& buf, const py::dict& d, const Ptrs& rows, size_t n) {
  const LocalBuffer::State state = state_from(d);
  auto cols = columns_arg<ConstColumns>(buf.layout(), rows, n);
  py::gil_scoped_release release;
  buf.restore(state, cols);
}

}  // namespace

void bind_buffer(py::module_& m) {
  m.def(
      "check_buffer_state",
      [](const py::dict& state, uintptr_t labels, size_t n, size_t capacity, std::optional<uint32_t> num_classes) {
        return LocalBuffer::check_state(state_from(state), reinterpret_cast<const int64_t*>(labels), n, capacity,
                                        num_classes);
      },
      py::arg("state"), py::arg("labels"), py::arg("n"), py::arg("capacity"), py::arg("num_classes"),
      "Empty when a policy state with these row labels could be restored, else what is wrong.");
  py::class_<LocalBuffer, std::shared_ptr<LocalBuffer>>(m, "LocalBuffer")
      .def(py::init(&make_buffer), py::arg("field_bytes"), py::arg("capacity"), py::arg("num_classes"),
           py::arg("candidates"), py::arg("seed"), py::arg("passes") = false)
      .def(
          "add",
          [](LocalBuffer& b, const Ptrs& ptrs, size_t n) {
            auto cols = columns_arg<ConstColumns>(b.layout(), ptrs, n);
            py::gil_scoped_release release;
            return b.add(cols);
          },
          py::arg("ptrs"), py::arg("n"))
      .def(
          "check_labels",
          [](const LocalBuffer& b, uintptr_t labels, size_t n) {
            return b.check_labels(reinterpret_cast<const int64_t*>(labels), n);
          },
          py::arg("labels"), py::arg("n"))
      .def(
          "sample",
          [](LocalBuffer& b, uint32_t r, const Ptrs& out) {
            auto cols = columns_arg<Columns>(b.layout(), out, r);
            py::gil_scoped_release release;
            return b.sample(r, cols);
          },
          py::arg("r"), py::arg("out"))
      .def(
          "gather",
          [](const LocalBuffer& b, const std::vector<uint32_t>& slots, const Ptrs& out) {
            auto cols = columns_arg<Columns>(b.layout(), out, slots.size());
            py::gil_scoped_release release;
            return b.gather(slots.data(), slots.size(), cols, 0);
          },
          py::arg("slots"), py::arg("out"))
      .def("size", &LocalBuffer::size)
      .def("__len__", &LocalBuffer::size)
      .def_property_readonly("capacity", &LocalBuffer::capacity)
      .def_property_readonly("nbytes", &LocalBuffer::nbytes)
      .def("class_counts", &LocalBuffer::class_counts)
      .def("state", &state_of, py::arg("rows") = py::none(), py::arg("n") = 0)
      .def("restore", &restore_from, py::arg("state"), py::arg("rows"), py::arg("n"));
}

}  // namespace reverie
