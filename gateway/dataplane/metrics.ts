/**
 * A small Prometheus text-format registry: counters and gauges with labels.
 * Hot paths hold a pre-resolved series (`series(labels)`) so counting is one
 * addition, with no label formatting per byte or connection.
 */

type Labels = Readonly<Record<string, string>>;

export class MetricSeries {
  value = 0;
  add(n = 1): void {
    this.value += n;
  }
}

class Family {
  readonly series = new Map<string, MetricSeries>();
  constructor(
    readonly name: string,
    readonly help: string,
    readonly type: "counter" | "gauge",
  ) {}

  labels(labels: Labels = {}): MetricSeries {
    const key = Object.entries(labels)
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([k, v]) => `${k}="${escapeLabel(v)}"`)
      .join(",");
    let s = this.series.get(key);
    if (!s) this.series.set(key, (s = new MetricSeries()));
    return s;
  }

  render(): string {
    const lines = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} ${this.type}`];
    for (const [key, s] of this.series) lines.push(`${this.name}${key ? `{${key}}` : ""} ${s.value}`);
    return lines.join("\n");
  }
}

function escapeLabel(v: string): string {
  return v.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
}

export class MetricsRegistry {
  private readonly families = new Map<string, Family>();

  counter(name: string, help: string): Family {
    return this.family(name, help, "counter");
  }

  gauge(name: string, help: string): Family {
    return this.family(name, help, "gauge");
  }

  /** The value of one series, for tests and the admin endpoint; 0 when never touched. */
  value(name: string, labels: Labels = {}): number {
    return this.families.get(name)?.labels(labels).value ?? 0;
  }

  render(): string {
    return [...this.families.values()].map((f) => f.render()).join("\n") + "\n";
  }

  private family(name: string, help: string, type: "counter" | "gauge"): Family {
    let f = this.families.get(name);
    if (!f) this.families.set(name, (f = new Family(name, help, type)));
    return f;
  }
}

/** Every metric the gateway exports, by role. */
export function gatewayMetrics(registry: MetricsRegistry) {
  return {
    registry,
    downstreamConnections: registry.counter("fedgate_gateway_downstream_connections_total", "Connections accepted, by listener."),
    downstreamActive: registry.gauge("fedgate_gateway_downstream_active_connections", "Open downstream connections, by listener."),
    downstreamRefused: registry.counter("fedgate_gateway_downstream_refused_total", "Downstream connections refused after acceptance, by listener and reason."),
    upstreamConnections: registry.counter("fedgate_gateway_upstream_connections_total", "Upstream connections established, by cluster."),
    upstreamActive: registry.gauge("fedgate_gateway_upstream_active_connections", "Open upstream connections, by cluster."),
    upstreamConnectFailures: registry.counter("fedgate_gateway_upstream_connect_failures_total", "Failed upstream connection attempts, by cluster."),
    noHealthyUpstream: registry.counter("fedgate_gateway_upstream_no_healthy_total", "Downstream connections closed because no endpoint accepted, by cluster."),
    bytes: registry.counter("fedgate_gateway_bytes_total", "Bytes proxied, by cluster and direction (upstream: client to server)."),
    failovers: registry.counter("fedgate_gateway_failovers_total", "Connections served by another endpoint after a connect failure, by cluster."),
    ejections: registry.counter("fedgate_gateway_outlier_ejections_total", "Endpoints ejected by outlier detection, by cluster."),
    healthTransitions: registry.counter("fedgate_gateway_health_check_transitions_total", "Active health check state changes, by cluster and new state."),
    tlsFailures: registry.counter("fedgate_gateway_tls_handshake_failures_total", "TLS handshakes refused or failed, by side (downstream/upstream) and reason."),
    httpRequests: registry.counter("fedgate_gateway_http_requests_total", "L7 requests answered, by route cluster, serving fedgate cluster (served_by, empty when no upstream answered) and response class (2xx..5xx)."),
    httpRetries: registry.counter("fedgate_gateway_http_retries_total", "L7 request attempts after the first, by cluster and reason (connect_failure, refused_stream, reset, timeout, 5xx, grpc_unavailable, ...)."),
    httpStaleRetries: registry.counter("fedgate_gateway_http_stale_connection_retries_total", "L7 requests sent again on a fresh connection to the same endpoint because the pooled keep-alive connection they went out on was closed by the server with no answer (not an endpoint failure), by cluster."),
    httpFailovers: registry.counter("fedgate_gateway_http_failovers_total", "L7 requests answered by a later priority than their first attempt, by cluster."),
    httpTimeouts: registry.counter("fedgate_gateway_http_timeouts_total", "L7 requests cut by their route timeout (504 / DEADLINE_EXCEEDED), by cluster."),
    upstreamActiveRequests: registry.gauge("fedgate_gateway_upstream_active_requests", "L7 request attempts in flight, by cluster."),
    httpDownstreamErrors: registry.counter("fedgate_gateway_http_downstream_errors_total", "Bad or stalled downstream HTTP input, by listener and reason (header_overflow, malformed, headers_timeout, h2_protocol, ...)."),
    downstreamStreams: registry.counter("fedgate_gateway_downstream_streams_total", "Relayed connections that arrived as streams in a fedgate-mux tunnel (each also counts per upstream cluster), by listener."),
    downstreamActiveStreams: registry.gauge("fedgate_gateway_downstream_active_streams", "Open streams in fedgate-mux tunnels, by listener."),
    muxTunnels: registry.counter("fedgate_gateway_mux_tunnels_total", "fedgate-mux/1 tunnels established, by side (dialled: to a peer gateway; accepted: on the export listener)."),
    muxActiveTunnels: registry.gauge("fedgate_gateway_mux_active_tunnels", "Open fedgate-mux/1 tunnels, by side."),
    muxProtocolErrors: registry.counter("fedgate_gateway_mux_protocol_errors_total", "Tunnels closed on bad input from the peer, by side and reason (unknown_frame_type, frame_too_large, window_exceeded, too_many_streams, unknown_stream, ...)."),
    muxKeepAliveTimeouts: registry.counter("fedgate_gateway_mux_keepalive_timeouts_total", "Dialled fedgate-mux/2 tunnels closed because the peer gateway answered no PING within the keep-alive timeout (it hangs with its socket open)."),
    muxAcceptedKeepAliveTimeouts: registry.counter("fedgate_gateway_mux_accepted_keepalive_timeouts_total", "Accepted fedgate-mux/2 tunnels (export side) closed because the dialling gateway answered no PING within the keep-alive timeout (its host died or its process hangs); their streams were reset and their backend connections closed."),
    muxStreamRefusals: registry.counter("fedgate_gateway_mux_stream_refusals_total", "Stream opens the peer gateway refused or that were lost with their tunnel, by reason; the connection tried the next endpoint."),
    xdsUpdates: registry.counter("fedgate_gateway_xds_updates_total", "xDS responses handled, by type and result (ack/nack)."),
    xdsConnected: registry.gauge("fedgate_gateway_xds_connected", "1 while the ADS stream is up."),
    ready: registry.gauge("fedgate_gateway_ready", "1 while GET /ready answers 200: config applied, every listener the control plane asked for serving, not draining."),
    listenerNotServing: registry.gauge("fedgate_gateway_listener_not_serving", "1 while a listener the control plane asked for is not serving (its address could not be bound), by listener; 0 once bound or no longer asked for."),
  };
}

export type GatewayMetrics = ReturnType<typeof gatewayMetrics>;
