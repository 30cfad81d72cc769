"""tuneforge.infer"""
