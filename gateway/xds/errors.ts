import { FedgateError, ValidationError, type Problem } from "../../common/index.ts";

/** Base of every xDS control-plane error; branch on the class or `code`, never on the message. */
export class XdsError extends FedgateError {}

/** The federation snapshot fed to the server failed its schema; nothing of it was applied. */
export class XdsInputError extends ValidationError {
  constructor(problems: readonly Problem[]) {
    super("FEDGATE_XDS_INVALID_INPUT", "xDS federation snapshot", problems);
  }
}

/** Options of an xDS component failed validation. */
export class XdsOptionsError extends ValidationError {
  constructor(subject: string, problems: readonly Problem[]) {
    super("FEDGATE_XDS_INVALID_OPTIONS", subject, problems);
  }
}

/**
 * A translated resource broke its proto or a protoc-gen-validate rule, or the
 * resource set is inconsistent (a route naming a missing cluster). This is a
 * translation bug: the last good resources keep being served.
 */
export class XdsResourceValidationError extends ValidationError {
  constructor(problems: readonly Problem[]) {
    super("FEDGATE_XDS_INVALID_RESOURCE", "xDS resources", problems);
  }
}

/** The Envoy protos could not be loaded (a broken install). */
export class XdsProtoLoadError extends XdsError {
  constructor(message: string, options: { cause?: unknown } = {}) {
    super("FEDGATE_XDS_PROTO_LOAD", message, options);
  }
}

/** The ADS server could not bind or was used after close. Binding may succeed later. */
export class XdsServerError extends XdsError {
  constructor(message: string, options: { cause?: unknown; retryable?: boolean } = {}) {
    super("FEDGATE_XDS_SERVER", message, options);
  }
}

/** A data plane sent a request the protocol does not allow (unknown type, no node). */
export class XdsProtocolError extends XdsError {
  constructor(message: string) {
    super("FEDGATE_XDS_PROTOCOL", message);
  }
}
