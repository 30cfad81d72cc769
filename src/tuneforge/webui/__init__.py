"""tuneforge.webui"""
