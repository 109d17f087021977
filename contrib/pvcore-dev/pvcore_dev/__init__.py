"""pvcore's developer tools, apart from the framework: the plugin scaffolder
(``python -m pvcore_dev.newplugin``) and the generators that keep the docs true to
the code (``python -m pvcore_dev.hookdoc docs/plugins.md``,
``python -m pvcore_dev.ownerdoc docs/architecture.md``). A device never installs it."""
