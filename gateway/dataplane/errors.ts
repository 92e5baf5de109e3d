import { FedgateError, ValidationError, type Problem } from "../../common/index.ts";

/** Base of every data-plane error; branch on the class or `code`, never on the message. */
export class GatewayError extends FedgateError {}

/** The bootstrap file is missing, unreadable or invalid; every problem is listed. */
export class GatewayBootstrapError extends ValidationError {
  constructor(problems: readonly Problem[], options: { cause?: unknown } = {}) {
    super("FEDGATE_GATEWAY_INVALID_BOOTSTRAP", "gateway bootstrap", problems, options);
  }
}

/** No endpoint of an upstream cluster accepted a connection (all tried, or none available). */
export class NoHealthyUpstreamError extends GatewayError {
  constructor(cluster: string, attempts: number, options: { cause?: unknown } = {}) {
    super("FEDGATE_GATEWAY_NO_HEALTHY_UPSTREAM", `no endpoint of ${cluster} accepted a connection (${attempts} tried)`, { ...options, retryable: true });
  }
}

/** A listener could not bind its address. */
export class ListenFailedError extends GatewayError {
  constructor(listener: string, address: string, options: { cause?: unknown } = {}) {
    super("FEDGATE_GATEWAY_LISTEN_FAILED", `listener ${listener} cannot bind ${address}`, { ...options, retryable: true });
  }
}
