#include "bindings/bind_thallium.h"

#include <pybind11/stl.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "bindings/reply_dict.h"
#include "bindings/seconds_arg.h"
#include "transport/thallium/thallium_transport.h"

namespace py = pybind11;

namespace reverie {

void bind_thallium(py::module_& m) {
  py::class_<ThalliumTransport, Transport, std::shared_ptr<ThalliumTransport>>(m, "ThalliumTransport")
      .def_property_readonly("self_address", &ThalliumTransport::self_address,
                             "This rank's Mercury address, to exchange with the other ranks.")
      .def("connect", &ThalliumTransport::connect, py::arg("addresses"), py::call_guard<py::gil_scoped_release>(),
           "Looks up every rank's provider; addresses[i] is rank i's self_address.")
      .def("abandon", &ThalliumTransport::abandon, py::call_guard<py::gil_scoped_release>(),
           "Stops serving at once (not collective); for a transport that no engine owns.")
      .def(
          "send_raw_request",
          [](ThalliumTransport& t, int peer, const py::bytes& data, double timeout) -> py::object {
            const std::string bytes = data;
            const auto deadline = Clock::now() + seconds_arg(timeout, "timeout");
            std::optional<ThalliumTransport::RawReply> reply;
            {
              py::gil_scoped_release release;
              reply = t.send_raw_request(peer, bytes, deadline);
            }
            if (!reply) return py::none();
            return reply_dict(reply->reply, reply->reply_bytes);
          },
          py::arg("peer"), py::arg("data"), py::arg("timeout"),
          "Test hook: sends raw request bytes to peer's provider, returns its reply as a dict or None on "
          "timeout. Call only while no draw is in flight on this rank.");

  m.def(
      "thallium_transport",
      [](std::shared_ptr<LocalBuffer> buffer, const std::string& address, uint64_t token, uint32_t max_rows,
         double timeout, int rank, int world_size) {
        ThalliumTransportOptions o{address, token, max_rows, rank, world_size, seconds_arg(timeout, "timeout")};
        py::gil_scoped_release release;
        return std::make_shared<ThalliumTransport>(std::move(buffer), std::move(o));
      },
      py::arg("buffer"), py::arg("address"), py::arg("token"), py::arg("max_rows"), py::arg("timeout"),
      py::arg("rank"), py::arg("world_size"),
      "Starts this rank's Thallium engine on `address` (e.g. 'na+sm', 'ofi+tcp://127.0.0.1') and serves "
      "`buffer`; call connect() with every rank's self_address before drawing.");
}

}  // namespace reverie
