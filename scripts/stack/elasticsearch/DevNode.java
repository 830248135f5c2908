// Launcher for the dev stack's single-node Elasticsearch (scripts/stack/components/elasticsearch.sh).
//
// No Elasticsearch distribution can be downloaded here, so this starts the server jar from Maven
// Central in-process, with the Netty4 HTTP/transport plugin loaded from the classpath by
// ClasspathPluginsService (the test framework's MockNode does the same but boots the randomized
// test harness). It lives in org.elasticsearch.node because Node's NodeConstruction hook is
// package-private; everything runs on the plain classpath, so the split package is harmless.
// RootInfoPlugin stands in for the rest-root module (not published to Maven Central): GET/HEAD /.
// Runs in the foreground; SIGTERM closes the node cleanly.
//
// Usage: java ... org.elasticsearch.node.DevNode key=value...   (each argument is a node setting)

package org.elasticsearch.node;

import org.elasticsearch.Build;
import org.elasticsearch.client.internal.node.NodeClient;
import org.elasticsearch.cluster.service.ClusterService;
import org.elasticsearch.common.bytes.BytesArray;
import org.elasticsearch.common.logging.LogConfigurator;
import org.elasticsearch.common.settings.Settings;
import org.elasticsearch.env.Environment;
import org.elasticsearch.plugins.ActionPlugin;
import org.elasticsearch.plugins.ClasspathPluginsService;
import org.elasticsearch.plugins.Plugin;
import org.elasticsearch.plugins.PluginsLoader;
import org.elasticsearch.plugins.PluginsService;
import org.elasticsearch.rest.BaseRestHandler;
import org.elasticsearch.rest.RestHandler;
import org.elasticsearch.rest.RestRequest;
import org.elasticsearch.rest.RestResponse;
import org.elasticsearch.rest.RestStatus;
import org.elasticsearch.transport.netty4.Netty4Plugin;
import org.elasticsearch.xcontent.XContentBuilder;

import java.util.Collection;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.function.Supplier;

public final class DevNode extends Node {

    private DevNode(Environment environment, Collection<Class<? extends Plugin>> classpathPlugins) {
        super(NodeConstruction.prepareConstruction(environment, null, new NodeServiceProvider() {
            @Override
            PluginsService newPluginService(Environment env, PluginsLoader pluginsLoader) {
                return new ClasspathPluginsService(env.settings(), env, classpathPlugins);
            }
        }, true));
    }

    /** GET / and HEAD / (the cluster info that clients ping), as the rest-root module serves them. */
    public static final class RootInfoPlugin extends Plugin implements ActionPlugin {
        private volatile ClusterService clusterService;

        @Override
        public Collection<?> createComponents(PluginServices services) {
            clusterService = services.clusterService();
            return List.of();
        }

        @Override
        public Collection<RestHandler> getRestHandlers(
            Settings settings,
            org.elasticsearch.common.io.stream.NamedWriteableRegistry namedWriteableRegistry,
            org.elasticsearch.rest.RestController restController,
            org.elasticsearch.common.settings.ClusterSettings clusterSettings,
            org.elasticsearch.common.settings.IndexScopedSettings indexScopedSettings,
            org.elasticsearch.common.settings.SettingsFilter settingsFilter,
            org.elasticsearch.cluster.metadata.IndexNameExpressionResolver indexNameExpressionResolver,
            Supplier<org.elasticsearch.cluster.node.DiscoveryNodes> nodesInCluster,
            java.util.function.Predicate<org.elasticsearch.features.NodeFeature> clusterSupportsFeature
        ) {
            return List.of(new BaseRestHandler() {
                @Override
                public String getName() {
                    return "dev_node_main_action";
                }

                @Override
                public List<Route> routes() {
                    return List.of(new Route(RestRequest.Method.GET, "/"), new Route(RestRequest.Method.HEAD, "/"));
                }

                @Override
                protected RestChannelConsumer prepareRequest(RestRequest request, NodeClient client) {
                    return channel -> {
                        if (request.method() == RestRequest.Method.HEAD) {
                            channel.sendResponse(new RestResponse(RestStatus.OK, "application/json", BytesArray.EMPTY));
                            return;
                        }
                        var state = clusterService.state();
                        Build build = Build.current();
                        XContentBuilder b = channel.newBuilder();
                        b.startObject()
                            .field("name", clusterService.getNodeName())
                            .field("cluster_name", state.getClusterName().value())
                            .field("cluster_uuid", state.metadata().clusterUUID())
                            .startObject("version")
                            .field("number", build.qualifiedVersion())
                            .field("build_flavor", build.flavor())
                            .field("build_type", build.type().displayName())
                            .field("build_hash", build.hash())
                            .field("build_date", build.date())
                            .field("build_snapshot", build.isSnapshot())
                            .field("lucene_version", org.apache.lucene.util.Version.LATEST.toString())
                            .field("minimum_wire_compatibility_version", build.minWireCompatVersion())
                            .field("minimum_index_compatibility_version", build.minIndexCompatVersion())
                            .endObject()
                            .field("tagline", "You Know, for Search")
                            .endObject();
                        channel.sendResponse(new RestResponse(RestStatus.OK, b));
                    };
                }
            });
        }
    }

    public static void main(String[] args) throws Exception {
        Settings.Builder b = Settings.builder();
        for (String a : args) {
            int eq = a.indexOf('=');
            if (eq <= 0) throw new IllegalArgumentException("expected key=value, got: " + a);
            b.put(a.substring(0, eq), a.substring(eq + 1));
        }
        Settings settings = b.build();

        // Logging comes from <path.home>/config/log4j2.properties (console only: start_daemon's log).
        LogConfigurator.registerErrorListener();
        LogConfigurator.setClusterName(settings.get("cluster.name", "elasticsearch"));
        LogConfigurator.setNodeName(settings.get("node.name", "node"));
        Environment env = InternalSettingsPreparer.prepareEnvironment(settings, Map.of(), null, () -> "dev-node");
        LogConfigurator.configure(env, true);

        Node node = new DevNode(env, List.of(Netty4Plugin.class, RootInfoPlugin.class));
        CountDownLatch closed = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            try {
                node.prepareForClose();
                node.close();
                node.awaitClose(20, TimeUnit.SECONDS);
            } catch (Exception e) {
                e.printStackTrace();
            } finally {
                closed.countDown();
            }
        }, "dev-node-shutdown"));
        try {
            node.start();
        } catch (Throwable t) {
            t.printStackTrace();
            System.exit(1);
        }
        closed.await();
    }
}
