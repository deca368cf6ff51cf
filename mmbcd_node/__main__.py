from mmbcd_node.admin.cli import main

main()
