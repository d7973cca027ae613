"""Security material generated from the site config: broker accounts, ACLs, TLS listener.

``crowdwatch security mosquitto-config`` writes a mosquitto config, password file and ACL file
in which every edge camera has its own account that may publish only under its own
``{prefix}/v1/{site}/{camera}/`` topics and read nothing.
"""
