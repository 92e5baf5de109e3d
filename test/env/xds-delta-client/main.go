// xds-delta-client is an independent xDS client for fedgate's integration
// tests: it speaks DeltaAggregatedResources with go-control-plane's generated
// protos (not fedgate's encoder), ACKs every response, and prints each one as
// a JSON line on stdout so a test can check what an independent decoder saw.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/structpb"

	// Every message type a fedgate resource can hold, so protojson can expand each Any.
	_ "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/tls_inspector/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/retry/host/previous_hosts/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/retry/priority/previous_priorities/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/raw_buffer/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
)

type resource struct {
	Name     string          `json:"name"`
	Version  string          `json:"version"`
	Resource json.RawMessage `json:"resource"`
}

type line struct {
	TypeURL           string     `json:"typeUrl"`
	SystemVersionInfo string     `json:"systemVersionInfo"`
	Nonce             string     `json:"nonce"`
	Resources         []resource `json:"resources"`
	RemovedResources  []string   `json:"removedResources"`
	Error             string     `json:"error,omitempty"`
}

func main() {
	server := flag.String("server", "", "host:port of the ADS server")
	nodeID := flag.String("node", "go-delta-client", "node.id")
	dataplane := flag.String("dataplane", "gateway", "node.metadata.FEDGATE_DATAPLANE")
	types := flag.String("types", "", "comma-separated type URLs; each may end in =name1;name2 to subscribe to names instead of the wildcard")
	flag.Parse()
	if *server == "" || *types == "" {
		fmt.Fprintln(os.Stderr, "usage: xds-delta-client -server host:port -types url[=a;b],...")
		os.Exit(2)
	}
	if err := run(*server, *nodeID, *dataplane, strings.Split(*types, ",")); err != nil {
		fmt.Fprintln(os.Stderr, "xds-delta-client:", err)
		os.Exit(1)
	}
}

func run(server, nodeID, dataplane string, types []string) error {
	conn, err := grpc.NewClient(server, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	stream, err := discovery.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(context.Background())
	if err != nil {
		return err
	}
	metadata, err := structpb.NewStruct(map[string]any{"FEDGATE_DATAPLANE": dataplane})
	if err != nil {
		return err
	}
	node := &core.Node{Id: nodeID, Cluster: "go", UserAgentName: "go-control-plane-delta-client", Metadata: metadata}
	for _, t := range types {
		url, names, _ := strings.Cut(t, "=")
		subscribe := []string{}
		if names != "" {
			subscribe = strings.Split(names, ";")
		}
		if err := stream.Send(&discovery.DeltaDiscoveryRequest{Node: node, TypeUrl: url, ResourceNamesSubscribe: subscribe}); err != nil {
			return err
		}
		node = nil
	}
	out := json.NewEncoder(os.Stdout)
	for {
		response, err := stream.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		l := line{TypeURL: response.TypeUrl, SystemVersionInfo: response.SystemVersionInfo, Nonce: response.Nonce, Resources: []resource{}, RemovedResources: response.RemovedResources}
		if l.RemovedResources == nil {
			l.RemovedResources = []string{}
		}
		var decodeErr error
		for _, r := range response.Resources {
			body, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(r.Resource)
			if err != nil {
				decodeErr = fmt.Errorf("resource %s: %w", r.Name, err)
				break
			}
			l.Resources = append(l.Resources, resource{Name: r.Name, Version: r.Version, Resource: body})
		}
		ack := &discovery.DeltaDiscoveryRequest{TypeUrl: response.TypeUrl, ResponseNonce: response.Nonce}
		if decodeErr != nil {
			// A resource this client cannot decode is NACKed, as Envoy would.
			l.Error = decodeErr.Error()
			ack.ErrorDetail = &rpcstatus.Status{Code: int32(codes.InvalidArgument), Message: decodeErr.Error()}
		}
		if err := out.Encode(l); err != nil {
			return err
		}
		if err := stream.Send(ack); err != nil {
			return err
		}
	}
}
