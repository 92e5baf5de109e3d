import * as grpc from "@grpc/grpc-js";

/** A tiny gRPC echo service with no proto: the reply names the server (and the client's SPIFFE ID under mTLS). */
export const ECHO_PATH = "/fedgate.test.Echo/Echo";

const identity = (b: Buffer) => b;

export interface EchoServer {
  name: string;
  port: number;
  calls: number;
  close(): Promise<void>;
}

export interface EchoTls {
  rootPem: string;
  chainPem: string;
  keyPem: string;
}

export async function startEchoServer(name: string, tls?: EchoTls): Promise<EchoServer> {
  const server = new grpc.Server();
  const state = { calls: 0 };
  server.addService(
    { Echo: { path: ECHO_PATH, requestStream: false, responseStream: false, requestSerialize: identity, requestDeserialize: identity, responseSerialize: identity, responseDeserialize: identity } },
    {
      Echo: (call: grpc.ServerUnaryCall<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) => {
        state.calls += 1;
        const peer = call.getAuthContext()?.sslPeerCertificate?.subjectaltname ?? "";
        callback(null, Buffer.from(JSON.stringify({ server: name, peer })));
      },
    },
  );
  const credentials = tls
    ? grpc.ServerCredentials.createSsl(Buffer.from(tls.rootPem), [{ cert_chain: Buffer.from(tls.chainPem), private_key: Buffer.from(tls.keyPem) }], true)
    : grpc.ServerCredentials.createInsecure();
  const port = await new Promise<number>((resolve, reject) => server.bindAsync("127.0.0.1:0", credentials, (e, p) => (e ? reject(e) : resolve(p))));
  return {
    name,
    port,
    get calls() {
      return state.calls;
    },
    close: () => new Promise<void>((resolve) => server.tryShutdown(() => resolve())),
  };
}
