// Command containerd-stargz-grpc serves the stargz snapshotter (github.com/containerd/stargz-snapshotter,
// pinned by ../go.mod) to containerd as a proxy snapshotter plugin over a unix socket.
//
// Upstream's own main lives in the nested module github.com/containerd/stargz-snapshotter/cmd, which
// the Go module proxy does not serve; this is the same wiring over the library's service package:
// TOML config -> service.NewStargzSnapshotterService -> containerd's snapshots gRPC API.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	snapshotsapi "github.com/containerd/containerd/api/services/snapshots/v1"
	"github.com/containerd/containerd/v2/contrib/snapshotservice"
	"github.com/containerd/log"
	"github.com/containerd/stargz-snapshotter/service"
	"github.com/containerd/stargz-snapshotter/service/keychain/dockerconfig"
	"github.com/containerd/stargz-snapshotter/version"
	"github.com/pelletier/go-toml/v2"
	"google.golang.org/grpc"
)

func main() {
	address := flag.String("address", "/run/containerd-stargz-grpc/containerd-stargz-grpc.sock", "unix socket the snapshots gRPC API listens on")
	configPath := flag.String("config", "", "TOML config (stargz-snapshotter's config.toml format); empty for defaults")
	rootDir := flag.String("root", "/var/lib/containerd-stargz-grpc", "directory for the snapshotter's state")
	logLevel := flag.String("log-level", "info", "trace, debug, info, warn or error")
	printVersion := flag.Bool("version", false, "print the stargz-snapshotter version and exit")
	flag.Parse()

	if *printVersion {
		fmt.Printf("containerd-stargz-grpc %s %s\n", version.Version, version.Revision)
		return
	}
	if err := log.SetLevel(*logLevel); err != nil {
		fatal(err)
	}
	if err := run(*address, *configPath, *rootDir); err != nil {
		fatal(err)
	}
}

func run(address, configPath, rootDir string) error {
	ctx := log.WithLogger(context.Background(), log.L)

	var config service.Config
	if configPath != "" {
		raw, err := os.ReadFile(configPath)
		if err != nil {
			return err
		}
		if err := toml.Unmarshal(raw, &config); err != nil {
			return fmt.Errorf("config %s: %w", configPath, err)
		}
	}

	// Registry credentials come from $DOCKER_CONFIG/config.json, as for the docker CLI.
	rs, err := service.NewStargzSnapshotterService(ctx, rootDir, &config,
		service.WithCredsFuncs(dockerconfig.NewDockerconfigKeychain(ctx)))
	if err != nil {
		return err
	}
	defer rs.Close()

	rpc := grpc.NewServer()
	snapshotsapi.RegisterSnapshotsServer(rpc, snapshotservice.FromSnapshotter(rs))

	if err := os.MkdirAll(filepath.Dir(address), 0o700); err != nil {
		return err
	}
	// A socket left by a killed run would make Listen fail with EADDRINUSE.
	if err := os.RemoveAll(address); err != nil {
		return err
	}
	l, err := net.Listen("unix", address)
	if err != nil {
		return err
	}
	served := make(chan error, 1)
	go func() { served <- rpc.Serve(l) }()
	log.G(ctx).WithField("address", address).WithField("version", version.Version).Info("serving the stargz snapshotter")

	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM)
	select {
	case sig := <-signals:
		log.G(ctx).Infof("got %s, exiting", sig)
		rpc.Stop()
		return nil
	case err := <-served:
		return err
	}
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "containerd-stargz-grpc:", err)
	os.Exit(1)
}
