#include "bindings/bind_engine.h"

#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include <cstring>
#include <optional>
#include <string>
#include <string_view>

#include "bindings/columns_arg.h"
#include "bindings/reply_dict.h"
#include "bindings/seconds_arg.h"
#include "engine/rehearsal_engine.h"
#include "transport/transport.h"
#ifdef REVERIE_HAVE_MPI
#include "transport/mpi/mpi_transport.h"
#endif
#ifdef REVERIE_HAVE_THALLIUM
#include "bindings/bind_thallium.h"
#endif

namespace py = pybind11;

namespace reverie {
namespace {

using Ptrs = std::vector<uintptr_t>;

std::chrono::milliseconds ms(double seconds) { return seconds_arg(seconds, "timeout", true); }

// Byte arrays over an engine's receive block; each keeps the engine alive while in use.
py::list block_arrays(py::object self, uint64_t which) {
  const auto& engine = self.cast<const RehearsalEngine&>();
  const SampleLayout& layout = engine.buffer().layout();
  const Columns& cols = engine.receive_block(which);
  py::list out;
  for (size_t c = 0; c < layout.num_columns(); ++c) {
    const auto n = static_cast<py::ssize_t>(layout.row_bytes(c) * cols.rows);
    out.append(py::array_t<uint8_t>({n}, {1}, reinterpret_cast<uint8_t*>(cols.base[c]), self));
  }
  const auto r = static_cast<py::ssize_t>(cols.rows);
  out.append(py::array_t<int32_t>({r}, {sizeof(int32_t)}, const_cast<int32_t*>(engine.receive_ranks(which)), self));
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
  d["local_s"] = s.local_ns * 1e-9;
  d["answer_wait_s"] = s.answer_wait_ns * 1e-9;
  d["rows_wait_s"] = s.rows_wait_ns * 1e-9;
  d["insert_s"] = s.insert_ns * 1e-9;
  d["add_wait_s"] = s.add_wait_ns * 1e-9;
  d["requests_sent"] = s.requests_sent;
  d["size_messages"] = s.size_messages;
  d["failed_requests"] = s.failed_requests;
  d["peers_timed_out"] = s.peers_timed_out;
  d["bad_token_replies"] = s.bad_token_replies;
  d["bad_token_requests"] = s.bad_token_requests;
  d["reply_staging_bytes"] = s.reply_staging_bytes;
  return d;
}

// The wire format, for unit tests of the decoder and hand-crafted requests in fault tests.
void bind_wire(py::module_& m) {
  py::enum_<wire::Status>(m, "WireStatus")
      .value("ok", wire::Status::kOk)
      .value("malformed", wire::Status::kMalformed)
      .value("bad_token", wire::Status::kBadToken)
      .value("bad_slot", wire::Status::kBadSlot)
      .value("too_many", wire::Status::kTooMany)
      .value("closing", wire::Status::kClosing)
      .value("timeout", wire::Status::kTimeout)
      .value("unreachable", wire::Status::kUnreachable);
  m.attr("WIRE_REQUEST_HEADER_BYTES") = sizeof(wire::RequestHeader);
  m.attr("WIRE_VERSION") = wire::kVersion;
  m.attr("WIRE_REPLY_BYTES") = sizeof(wire::Reply);
  m.def(
      "wire_encode_request",
      [](uint64_t token, uint64_t request_id, const std::vector<uint32_t>& slots) {
        std::string out(wire::request_bytes(static_cast<uint32_t>(slots.size())), '\0');
        wire::encode_request(token, request_id, slots.data(), static_cast<uint32_t>(slots.size()),
                             reinterpret_cast<std::byte*>(out.data()));
        return py::bytes(out);
      },
      py::arg("token"), py::arg("request_id"), py::arg("slots"));
  m.def(
      "wire_decode_request",
      [](const py::bytes& data, uint64_t token, uint32_t max_count, uint64_t owner_size) {
        // Copied into 4-byte aligned memory, as a receive buffer would be.
        const std::string_view view(data);
        std::vector<uint32_t> aligned((view.size() + 3) / 4);
        std::memcpy(aligned.data(), view.data(), view.size());
        const auto req = wire::decode_request(reinterpret_cast<const std::byte*>(aligned.data()), view.size(), token,
                                              max_count, owner_size);
        py::object id = req.has_id ? py::object(py::int_(req.request_id)) : py::object(py::none());
        return py::make_tuple(req.status, id, std::vector<uint32_t>(req.slots, req.slots + req.count));
      },
      py::arg("data"), py::arg("token"), py::arg("max_count"), py::arg("owner_size"),
      "(status, request_id or None, slots) of a received request, validated as an owner would.");
}

void bind_transports(py::module_& m) {
  bind_wire(m);
  py::class_<Transport, std::shared_ptr<Transport>> transport(m, "Transport");
  transport.def_property_readonly("rank", &Transport::rank)
      .def_property_readonly("world_size", &Transport::world_size)
      .def_property_readonly("name", &Transport::name)
      .def_property_readonly("requests_served", &Transport::requests_served,
                             "Requests this rank's server answered (errors included).")
      .def_property_readonly("splittable_fetch_bytes", &Transport::splittable_fetch_bytes,
                             "Draws of at most this many row bytes start on the caller (MPI: the eager limit).");
#ifdef REVERIE_HAVE_MPI
  m.attr("HAVE_MPI") = true;
  transport.def_property_readonly(
      "gathers_rows",
      [](Transport& t) -> py::object {
        auto* mpi = dynamic_cast<MpiTransport*>(&t);
        return mpi == nullptr ? py::object(py::none()) : py::object(py::bool_(mpi->gathers_rows()));
      },
      "MPI engine: whether each field's rows go as one message read in place (else None).");
  transport.def_property_readonly(
      "peer_paths",
      [](Transport& t) -> py::object {
        auto* mpi = dynamic_cast<MpiTransport*>(&t);
        if (mpi == nullptr) return py::none();
        py::list out;
        for (const PeerPath& p : mpi->peer_paths())
          out.append(py::dict(py::arg("path") = p.shared_memory ? "shm" : "net",
                              py::arg("eager_bytes") = p.eager_bytes, py::arg("gathers") = p.gathers_in_place,
                              py::arg("splits") = p.splits_rows, py::arg("ucx_rndv_bytes") = p.ucx_rndv_bytes,
                              py::arg("reply") = reply_way_name(p.way)));
        return out;
      },
      "MPI engine: the path to each rank, by rank ({path: 'shm' or 'net', eager_bytes, gathers, splits: rows "
      "past the eager limit go in pieces, ucx_rndv_bytes: UCX_RNDV_THRESH (0: UCX decides), reply: "
      "REVERIE_MPI_REPLY or 'auto'}; this rank's own entry: what a shared-memory peer would get), else None.");
  // Test hook, MPI engine only: raw bytes to a peer's server on the engine's communicator.
  transport.def(
      "send_raw_request",
      [](Transport& t, int peer, const py::bytes& data, double timeout, bool read_payload) -> py::object {
        auto* mpi = dynamic_cast<MpiTransport*>(&t);
        if (mpi == nullptr) throw py::type_error("send_raw_request: only the mpi engine has this test hook");
        const std::string_view view(data);
        std::vector<std::byte> bytes(view.size());
        std::memcpy(bytes.data(), view.data(), view.size());
        const auto deadline = Clock::now() + ms(timeout);
        std::optional<MpiTransport::RawReply> reply;
        {
          py::gil_scoped_release release;
          reply = mpi->send_raw_request(peer, bytes, deadline, read_payload);
        }
        if (!reply) return py::none();
        py::dict d = reply_dict(reply->reply, reply->reply_bytes);
        d["anonymous"] = reply->anonymous;
        d["payload_messages"] = reply->payload_messages;
        d["payload_bytes"] = reply->payload_bytes;
        d["whole"] = reply->whole;
        return std::move(d);
      },
      py::arg("peer"), py::arg("data"), py::arg("timeout"), py::arg("read_payload") = true,
      "Test hook: sends raw request bytes to peer's server, returns its reply as a dict or None on timeout "
      "(read_payload=False: returns once the header is in, leaving the payload unread). "
      "Call only while no draw is in flight on this rank.");
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
                       double timeout, uint64_t seed, bool passes, uint32_t size_refresh) {
             if (size_refresh == 0) throw std::invalid_argument("size_refresh: expected at least 1 draw");
             EngineOptions o{max_representatives, candidates, queue_blocks, queue_rows, ms(timeout), seed, passes,
                             size_refresh};
             return std::make_unique<RehearsalEngine>(std::move(buffer), std::move(transport), o);
           }),
           py::arg("buffer"), py::arg("transport"), py::arg("max_representatives"), py::arg("candidates"),
           py::arg("queue_blocks"), py::arg("queue_rows"), py::arg("timeout"), py::arg("seed"),
           py::arg("passes") = false, py::arg("size_refresh") = EngineOptions{}.size_refresh)
      .def_property_readonly("rank", &RehearsalEngine::rank)
      .def_property_readonly("world_size", &RehearsalEngine::world_size)
      .def(
          "add",
          [](RehearsalEngine& e, const Ptrs& ptrs, size_t n, bool wake) {
            auto cols = columns_arg<ConstColumns>(e.buffer().layout(), ptrs, n);
            py::gil_scoped_release release;
            e.add(cols, wake);
          },
          py::arg("ptrs"), py::arg("n"), py::arg("wake") = true)
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
          [](RehearsalEngine& e, uint64_t ticket, double timeout) {
            py::gil_scoped_release release;
            return e.wait(ticket, ms(timeout));
          },
          py::arg("ticket"), py::arg("timeout"))
      .def("rows", &RehearsalEngine::rows, py::arg("ticket"))
      .def("release", &RehearsalEngine::release, py::arg("ticket"))
      .def("block_of", &RehearsalEngine::block_of, py::arg("ticket"))
      .def("block_arrays", &block_arrays, py::arg("which"))
      .def("block_generation", &RehearsalEngine::block_generation, py::arg("which"))
      .def("known_sizes", &RehearsalEngine::known_sizes)
      .def("excluded_peers", &RehearsalEngine::excluded_peers)
      .def(
          "snapshot",
          [](RehearsalEngine& e) {
            EngineState st;
            {
              py::gil_scoped_release release;
              st = e.quiesce_and_snapshot();
            }
            py::dict d;
            d["select_rng"] = st.select_rng;
            d["draw_rng"] = st.draw_rng;
            d["sizes"] = st.sizes;
            d["pass"] = py::make_tuple(st.pass.key, st.pass.position, st.pass.n);
            return d;
          })
      .def(
          "restore",
          [](RehearsalEngine& e, const py::dict& d) {
            PassOrder::State pass{};
            if (d.contains("pass")) {  // absent in checkpoints written before passes existed
              auto t = d["pass"].cast<py::tuple>();
              pass = {t[0].cast<uint64_t>(), t[1].cast<uint64_t>(), t[2].cast<uint64_t>()};
            }
            e.restore(EngineState{d["select_rng"].cast<Rng::State>(), d["draw_rng"].cast<Rng::State>(),
                                  d["sizes"].cast<std::vector<uint64_t>>(), pass});
          },
          py::arg("state"))
      .def("refresh_sizes", &RehearsalEngine::refresh_sizes,
           "The next draw asks every peer its size (and tells them this rank's).")
      .def("stats", &stats_of)
      .def("close", &RehearsalEngine::close, py::call_guard<py::gil_scoped_release>())
      .def("abandon", &RehearsalEngine::abandon, py::call_guard<py::gil_scoped_release>());
}

}  // namespace reverie
