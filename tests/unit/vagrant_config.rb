# Render the project's Vagrantfile with Vagrant's own configuration loader, for tests/unit/test_vagrantfile.py:
# per machine, its name, private-network addresses, forwarded ports, synced folders, libvirt description,
# CPUs and memory, and its provisioners. Usage: ruby vagrant_config.rb PROJECT_DIR  (prints JSON).
require "json"
require "vagrant"

env = Vagrant::Environment.new(cwd: ARGV.fetch(0))
machines = env.machine_names.map do |name|
  config = env.vagrantfile.machine_config(name, :libvirt, env.boxes)[:config]
  libvirt = config.vm.get_provider_config(:libvirt)
  {
    name: name.to_s,
    box: config.vm.box,
    hostname: config.vm.hostname,
    private_addresses: config.vm.networks.select { |kind, _| kind == :private_network }.map { |_, o| o[:ip] },
    forwarded_ports: config.vm.networks.select { |kind, _| kind == :forwarded_port }.map { |_, o| o },
    synced_folders: config.vm.synced_folders.transform_values { |o| {disabled: o[:disabled]} },
    description: libvirt.description,
    cpus: libvirt.cpus,
    memory: libvirt.memory,
    provisioners: config.vm.provisioners.map do |p|
      {type: p.type.to_s, playbook: p.config.playbook, inventory_path: p.config.inventory_path,
       limit: p.config.limit, config_file: p.config.config_file}
    end,
  }
end
puts JSON.dump(machines)
