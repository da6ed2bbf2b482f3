package cloudsource

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/registry-adapter/registry-adapter/model"
)

func TestServices(t *testing.T) {
	http80 := model.Port{Number: 80, Protocol: model.ProtocolHTTP}
	tcp80 := model.Port{Number: 80, Protocol: model.ProtocolTCP}
	grpc90 := model.Port{Number: 90, Protocol: model.ProtocolGRPC}
	s := Services{}
	s.Add([]string{"web", "api"}, model.Instance{ID: "b"}, []model.Port{grpc90, http80})
	s.Add([]string{"web"}, model.Instance{ID: "a"}, []model.Port{tcp80})
	s.Add(nil, model.Instance{ID: "c"}, []model.Port{tcp80})
	s.Add([]string{"bad"}, model.Instance{ID: "d"}, []model.Port{tcp80})
	failed := map[string]int{}
	got := s.Groups(func(name string) (string, error) {
		if name == "bad" {
			return "", errors.New("no host")
		}
		return strings.ToUpper(name), nil
	}, func(name string, instances int, err error) { failed[name] = instances })
	want := []model.Group{
		{Scope: "api", Services: []model.Service{{Name: "api", Host: "API", Ports: []model.Port{http80, grpc90},
			Instances: []model.Instance{{ID: "b"}}}}},
		{Scope: "web", Services: []model.Service{{Name: "web", Host: "WEB", Ports: []model.Port{http80, tcp80, grpc90},
			Instances: []model.Instance{{ID: "a"}, {ID: "b"}}}}},
	}
	if !reflect.DeepEqual(got, want) || !reflect.DeepEqual(failed, map[string]int{"bad": 1}) {
		t.Fatalf("groups %+v failed %v", got, failed)
	}
	if got := (Services{}).Groups(nil, nil); got != nil {
		t.Fatalf("no services: %+v", got)
	}
}
