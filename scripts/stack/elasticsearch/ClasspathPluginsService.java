// Part of the dev stack's Elasticsearch launcher (see DevNode.java): a PluginsService that loads
// plugin classes straight from the classpath (the same thing the test framework's
// MockPluginsService does, without putting the randomized-testing harness on the classpath, which
// switches Elasticsearch into test mode). Lives in org.elasticsearch.plugins for package access.

package org.elasticsearch.plugins;

import org.elasticsearch.Build;
import org.elasticsearch.common.settings.Settings;
import org.elasticsearch.env.Environment;

import java.util.ArrayList;
import java.util.Collection;
import java.util.List;
import java.util.Map;
import java.util.Set;

public final class ClasspathPluginsService extends PluginsService {

    private final List<LoadedPlugin> classpathPlugins;

    public ClasspathPluginsService(Settings settings, Environment environment, Collection<Class<? extends Plugin>> classes) {
        super(settings, environment.configDir(), new PluginsLoader(Set.of(), Set.of(), Map.of()));
        List<LoadedPlugin> loaded = new ArrayList<>();
        for (Class<? extends Plugin> c : classes) {
            Plugin instance = loadPlugin(c, settings, environment.configDir());
            PluginDescriptor descriptor = new PluginDescriptor(
                c.getName(),
                "classpath plugin",
                Build.current().version(),
                Build.current().version(),
                Integer.toString(Runtime.version().feature()),
                c.getName(),
                null,
                List.of(),
                false,
                false,
                false,
                false
            );
            loaded.add(new LoadedPlugin(descriptor, instance, ClasspathPluginsService.class.getClassLoader()));
        }
        loadExtensions(loaded);
        this.classpathPlugins = List.copyOf(loaded);
    }

    @Override
    protected List<LoadedPlugin> plugins() {
        return classpathPlugins;
    }
}
