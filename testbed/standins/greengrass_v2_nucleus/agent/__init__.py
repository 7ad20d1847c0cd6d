"""The stand-in nucleus deployment agent (test equipment); on a device its files are imported from lib/agent/."""
