#pragma once
// The NATS options `embed`, `index` and `worker` share (docs/scale-out.md).

#include <string>

#include <sluice/nats.hpp>

namespace CLI {
class App;
}

namespace pipeline_run {

struct NatsArgs {
  sluice::RemoteModelOptions remote;
  bool given = false;  // --nats was given
};

/// --nats URL, --nats-creds, --nats-tls-ca/-cert/-key, --nats-timeout; with `run`, also the
/// run's own: --nats-in-flight, --nats-ack-wait, --nats-max-deliveries.
void add_nats_options(CLI::App& cmd, NatsArgs& args, bool run);

}  // namespace pipeline_run
