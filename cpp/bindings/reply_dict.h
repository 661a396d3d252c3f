#pragma once
// A wire reply as a Python dict, for the engines' raw-request test hooks.
#include <pybind11/pybind11.h>

#include "transport/wire_format.h"

namespace reverie {

inline pybind11::dict reply_dict(const wire::Reply& reply, size_t reply_bytes) {
  pybind11::dict d;
  d["status"] = static_cast<wire::Status>(reply.status);
  d["magic"] = reply.magic;
  d["request_id"] = reply.request_id;
  d["owner_size"] = reply.owner_size;
  d["count"] = reply.count;
  d["reply_bytes"] = reply_bytes;
  return d;
}

}  // namespace reverie
