#include "nats_args.hpp"

#include <CLI/CLI.hpp>

namespace pipeline_run {

void add_nats_options(CLI::App& cmd, NatsArgs& args, bool run) {
  auto& n = args.remote.nats;
  auto* url = cmd.add_option_function<std::string>(
      "--nats",
      [&args](const std::string& v) {
        args.remote.nats.url = v;
        args.given = true;
      },
      run ? "Embed on model workers through NATS JetStream at this URL (nats://host:4222; several, comma-separated); "
            "run `pipeline-run worker` on any machine (docs/scale-out.md)"
          : "The NATS server with JetStream (nats://host:4222; several, comma-separated)");
  if (!run) url->required();
  cmd.add_option("--nats-creds", n.creds_file, "NATS credentials file (user JWT and NKey seed); user and password "
                                               "come from SLUICE_NATS_USER and SLUICE_NATS_PASSWORD, a token from "
                                               "SLUICE_NATS_TOKEN")
      ->check(CLI::ExistingFile);
  cmd.add_option("--nats-tls-ca", n.tls_ca, "CA certificates (PEM) to verify the NATS server with; TLS is then required")
      ->check(CLI::ExistingFile);
  cmd.add_option("--nats-tls-cert", n.tls_cert, "Client certificate chain (PEM) for mutual TLS")
      ->check(CLI::ExistingFile);
  cmd.add_option("--nats-tls-key", n.tls_key, "The client certificate's private key (PEM)")->check(CLI::ExistingFile);
  cmd.add_option("--nats-timeout", n.timeout_s,
                 run ? "Seconds the NATS server may stay unreachable before the run gives up (it fails, resumable)"
                     : "Seconds an answer may wait for an unreachable NATS server before the batch is left to "
                       "another worker (the worker itself keeps reconnecting)")
      ->check(CLI::Range(1.0, 86400.0))
      ->capture_default_str();
  if (!run) return;
  cmd.add_option("--nats-in-flight", args.remote.in_flight, "Batches on the wire at once")
      ->check(CLI::Range(1, 1024))
      ->capture_default_str();
  cmd.add_option("--nats-ack-wait", args.remote.ack_wait_s,
                 "Seconds before a batch whose worker went silent goes to another worker")
      ->check(CLI::Range(2.0, 3600.0))
      ->capture_default_str();
  cmd.add_option("--nats-max-deliveries", args.remote.max_deliveries,
                 "Runs of a batch that stop its worker (the first with other batches, the rest alone) before its "
                 "records are tried one by one and, if they still get none, fail")
      ->check(CLI::Range(2u, 100u))
      ->capture_default_str();
}

}  // namespace pipeline_run
